package keepalived

// Mail alerts: global_defs' settings, and smtp_alert inherited as
// keepalived inherits it (global_data.c, vrrp_parser.c, check_data.c's
// validate_check_config): an instance, sync group or virtual server takes
// smtp_alert_vrrp or smtp_alert_checker, else smtp_alert, else false, as
// xlb does; a real server takes smtp_alert_checker, else smtp_alert, else
// true, where xlb's takes its virtual server's: written out where they
// differ.

// mailOn reports whether keepalived would send mail: someone to mail and
// a server to mail through.
func (c *kaConfig) mailOn() bool { return len(c.emails) > 0 && c.smtpServer.ok }

func (cv *converter) mail(g *Table) {
	c := cv.c
	if len(c.emails) > 0 {
		var to []string
		for _, e := range c.emails {
			to = append(to, e.words[0])
		}
		g.Set("notification_email", to, "notification_email, "+c.emails[0].pos.String())
	}
	if c.emailFrom.ok {
		g.Set("notification_email_from", c.emailFrom.v, "")
	}
	if c.smtpServer.ok {
		g.Set("smtp_server", c.smtpServer.v, "")
	}
	if c.smtpHelo.ok {
		g.Set("smtp_helo_name", c.smtpHelo.v, "")
	}
	if c.smtpTimeout.ok {
		g.Set("smtp_connect_timeout", Duration(c.smtpTimeout.v), "")
	}
	for _, s := range []struct {
		key string
		v   setting[bool]
	}{{"smtp_alert", c.smtpAlert}, {"smtp_alert_vrrp", c.smtpAlertVRRP}, {"smtp_alert_checker", c.smtpAlertChecker}} {
		if s.v.ok {
			g.Set(s.key, s.v.v, "")
		}
	}
	if c.noEmailFaults.ok {
		g.Set("no_email_faults", true, "")
	}
}

// checkerAlert is keepalived's smtp_alert of a virtual server without its
// own; xlb's is the same.
func (c *kaConfig) checkerAlert() bool {
	return c.smtpAlertChecker.or(c.smtpAlert.or(false))
}

// realAlert writes a real server's smtp_alert where xlb's inheritance
// (the virtual server's) would not give keepalived's (own, else
// smtp_alert_checker, else smtp_alert, else true), when mail is on.
func (cv *converter) realAlert(vs *kaVS, rs *kaRS, rt *Table) {
	if rs.smtpAlert.ok {
		rt.Set("smtp_alert", rs.smtpAlert.v, "")
		return
	}
	c := cv.c
	ka := c.smtpAlertChecker.or(c.smtpAlert.or(true))
	if c.mailOn() && ka != vs.smtpAlert.or(c.checkerAlert()) {
		why := "keepalived's default for a real server"
		switch {
		case c.smtpAlertChecker.ok:
			why = "global_defs' smtp_alert_checker"
		case c.smtpAlert.ok:
			why = "global_defs' smtp_alert"
		}
		rt.Set("smtp_alert", ka, why)
	}
}
