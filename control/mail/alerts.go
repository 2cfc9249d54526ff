package mail

import (
	"fmt"
	"net/netip"
	"strings"
)

// The alerts, worded as keepalived words them (vrrp_notify.c,
// check_api.c and the checkers, ipwrapper.c, smtp.c's subjects): tools
// and people that read keepalived's mails read xlb's.

// InstanceAlert is the mail of a VRRP instance entering state (MASTER,
// BACKUP, FAULT or STOP); false for another state.
func InstanceAlert(routerID, instance, state string) (Message, bool) {
	subject, body, ok := vrrpWords(state, "=> VRRP Instance is now owning VRRP VIPs <=",
		"=> VRRP Instance is no longer owning VRRP VIPs <=", "=> VRRP Instance stopping <=")
	return Message{Subject: fmt.Sprintf("[%s] VRRP Instance %s - %s", routerID, instance, subject), Body: body}, ok
}

// GroupAlert is the mail of a sync group all of whose instances reached
// state (MASTER, BACKUP or FAULT), or of its stop (STOP).
func GroupAlert(routerID, group, state string) (Message, bool) {
	all := "=> All VRRP group instances are now in " + state + " state <="
	subject, body, ok := vrrpWords(state, all, all, "=> All VRRP group instances are now stopping <=")
	return Message{Subject: fmt.Sprintf("[%s] VRRP Group %s - %s", routerID, group, subject), Body: body}, ok
}

func vrrpWords(state, master, other, stop string) (subject, body string, ok bool) {
	switch state {
	case "MASTER":
		return "Entering MASTER state", master, true
	case "BACKUP", "FAULT":
		return "Entering " + state + " state", other, true
	case "STOP":
		return "Stopping", stop, true
	}
	return "", "", false
}

// RealServerAlert is the mail of a real server whose check (of type
// check: tcp, http...) took it down (with the check's error) or put it
// back up. rs and vs are formatted by Trio or GroupName.
func RealServerAlert(routerID, rs, vs string, up bool, check string, err error) Message {
	state, body := "UP", fmt.Sprintf("=> %s CHECK succeed on service <=", strings.ToUpper(check))
	if !up {
		state, body = "DOWN", fmt.Sprintf("=> %s CHECK failed on service <=", strings.ToUpper(check))
		if err != nil {
			body = fmt.Sprintf("=> %s CHECK failed on service: %s <=", strings.ToUpper(check), oneLine(err.Error()))
		}
	}
	return Message{Subject: fmt.Sprintf("[%s] Realserver %s of virtual server %s - %s", routerID, rs, vs, state), Body: body}
}

// VirtualServerAlert is the mail of a virtual server that gained (up) or
// lost its quorum; threshold is what the healthy weight was compared
// with (quorum + hysteresis to gain it, quorum - hysteresis to lose it),
// in keepalived's words, which write "+" and "<=" both ways.
func VirtualServerAlert(routerID, vs string, up bool, quorum, hysteresis uint32, threshold int64, weight uint64) Message {
	state, what := "UP", "Gained quorum"
	if !up {
		state, what = "DOWN", "Lost quorum"
	}
	return Message{
		Subject: fmt.Sprintf("[%s] Virtualserver %s - %s", routerID, vs, state),
		Body:    fmt.Sprintf("=> %s %d+%d=%d <= %d <=", what, quorum, hysteresis, threshold, weight),
	}
}

// Trio formats an address, protocol and port as keepalived's
// inet_sockaddrtotrio: "[10.0.0.7]:tcp:80".
func Trio(a netip.Addr, proto string, port uint16) string {
	return fmt.Sprintf("[%s]:%s:%d", a, proto, port)
}

// GroupName formats a virtual server of a virtual_server_group as
// keepalived's format_vs does ("[VSG_1]:0": a group's virtual server has
// no port of its own).
func GroupName(group string) string {
	return fmt.Sprintf("[%s]:0", group)
}
