package dataplane

import (
	"net/netip"
	"time"
)

// Connection sync (control/sync) moves connections between directors by
// their addresses, never by a dataplane's internal ids: a peer finds the
// service by VIP:port/proto and the real server by address and port, as
// IPVS's sync does (ip_vs_proc_conn, ip_vs_find_dest).

// ConnState is the state of a tracked connection, as the dataplanes keep
// it (ipvsadm counts ConnEstablished as ActiveConn, the others InActConn).
type ConnState uint8

const (
	ConnNew         ConnState = iota // a UDP flow; TCP before it is established
	ConnEstablished                  // TCP: a packet after the SYN
	ConnClosing                      // TCP: FIN or RST seen
)

var connStateNames = [...]string{ConnNew: "new", ConnEstablished: "established", ConnClosing: "closing"}

func (s ConnState) String() string {
	if int(s) < len(connStateNames) {
		return connStateNames[s]
	}
	return "state?"
}

// Conn is a connection, or a client's persistence template, as connection
// sync carries it.
type Conn struct {
	Service ServiceKey
	// Client is the client's address and port; a template's port is 0.
	Client  netip.AddrPort
	Backend BackendKey
	// Forward is the sender's forwarding mode (IPVS carries it; a
	// receiver forwards by its own service's).
	Forward  ForwardMode
	State    ConnState
	Template bool
	// Timeout is how long the receiver keeps the connection without
	// hearing of it again: the state's idle timeout, a template's
	// persistence timeout (what is left of it).
	Timeout time.Duration
}

// ImportResult is what became of one imported Conn.
type ImportResult uint8

const (
	Imported             ImportResult = iota
	ImportUnknownService              // no such service here (or not persistent, for a template)
	ImportUnknownReal                 // the service has no such real server here
	ImportLocal                       // this director forwards the flow: its own decision stays
	ImportFull                        // the table of imported connections is full
	ImportFailed                      // the dataplane refused it
)

var importResultNames = [...]string{Imported: "applied", ImportUnknownService: "unknown_service",
	ImportUnknownReal: "unknown_real_server", ImportLocal: "local", ImportFull: "full", ImportFailed: "failed"}

func (r ImportResult) String() string {
	if int(r) < len(importResultNames) {
		return importResultNames[r]
	}
	return "result?"
}

// ImportResults are the results in the order of their values, by name.
var ImportResults = func() []ImportResult {
	out := make([]ImportResult, len(importResultNames))
	for i := range out {
		out[i] = ImportResult(i)
	}
	return out
}()

// SyncStats count what the dataplane did for connection sync.
type SyncStats struct {
	Reported uint64 // flows reported by the fast path
	Lost     uint64 // reports lost (overwritten in their CPU's report ring before they were read)
	Promoted uint64 // imported flows taken over on their first packet here
	Imported uint64 // imported connections held now (last Sync)
}

// ConnSyncer is a dataplane that takes part in connection sync (XDP).
// Reports are the flows the dataplane decided that its peers must know:
// new ones, state changes, in batches; Walk visits every live connection
// and template it holds (its own and those imported), for a peer's bulk
// request and for the periodic refresh.
type ConnSyncer interface {
	// Reports starts the reports (idempotent) and returns their channel,
	// closed when the dataplane closes. A batch is the reader's to keep.
	Reports() <-chan []Conn
	// SetReporting turns reporting on or off in the fast path.
	SetReporting(on bool) error
	// Import takes the peers' connections: each result says what became
	// of the Conn at the same index. A connection this director forwards
	// (its service is forwarding here and it has a live entry of its own)
	// keeps its local decision.
	Import(conns []Conn) []ImportResult
	// Walk calls fn for every live connection and template until it
	// returns false.
	Walk(fn func(Conn) bool) error
	// SyncStats reads the sync counters.
	SyncStats() SyncStats
}
