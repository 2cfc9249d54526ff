package sync

// Reason is why a datagram or a record was not applied: one counter each
// (xlb_sync_dropped_total{reason}), as keepalived counts VRRP's receive
// errors.
type Reason uint8

const (
	ReasonNone Reason = iota
	// A whole datagram refused.
	ReasonSize      // shorter than its header, size field not the datagram's, a record past its end
	ReasonSyncID    // another sync id (ours is not 0)
	ReasonVersion   // version, reserved or spare bytes wrong (IPVS); magic or version (xlb)
	ReasonMalformed // an option's length, a record's type
	ReasonHMAC      // xlb: the HMAC does not verify with our key
	ReasonReplay    // xlb: a sequence number seen, too old, or an older boot of its sender
	ReasonPeer      // xlb: not from one of the configured peers
	// One record skipped.
	ReasonOption         // an unknown mandatory option
	ReasonProtocol       // not TCP or UDP (or a firewall-mark service)
	ReasonState          // not a state of its protocol
	ReasonUnknownService // no such virtual service here
	ReasonUnknownReal    // the service has no such real server here
	ReasonFull           // the table of imported connections is full
	ReasonFailed         // the dataplane refused it
	// An IPv6 record with an IPv4-mapped address: IPv6 traffic never has
	// one (a mapped address is IPv4 traffic, with IPv4 records), and no
	// record can carry it back.
	ReasonAddress
	reasonCount
)

var reasonNames = [...]string{
	ReasonNone: "none", ReasonSize: "size", ReasonSyncID: "syncid", ReasonVersion: "version",
	ReasonMalformed: "malformed", ReasonHMAC: "hmac", ReasonReplay: "replay", ReasonPeer: "peer",
	ReasonOption: "option", ReasonProtocol: "protocol", ReasonState: "state",
	ReasonUnknownService: "unknown_service", ReasonUnknownReal: "unknown_real_server",
	ReasonFull: "full", ReasonFailed: "failed", ReasonAddress: "address",
}

func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "reason?"
}

// Reasons are the drop reasons, in order (every counter is exported, at 0
// too).
func Reasons() []Reason {
	out := make([]Reason, 0, reasonCount-1)
	for r := ReasonNone + 1; r < reasonCount; r++ {
		out = append(out, r)
	}
	return out
}
