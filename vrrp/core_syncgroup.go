package vrrp

import "time"

// Sync groups: members follow each other to MASTER, BACKUP and FAULT
// (keepalived's vrrp_sync_group), and a group's notify scripts run when all
// its members have reached a state, and when the node stops.

// setGroups sets the sync groups; a group that stays (by name) keeps the
// state it last notified.
func (c *core) setGroups(gs []SyncGroupConfig) {
	c.groupCfg = gs
	kept := map[string]State{}
	for _, g := range gs {
		if st, ok := c.groupState[g.Name]; ok {
			kept[g.Name] = st
		}
	}
	c.groupState = kept
	c.groups = map[string][]*instance{}
	for _, in := range c.insts {
		in.group = ""
	}
	for _, g := range gs {
		for _, n := range g.Instances {
			if in := c.byName[n]; in != nil {
				in.group = g.Name
				c.groups[g.Name] = append(c.groups[g.Name], in)
			}
		}
	}
}

// followGroup makes the other members of in's sync group follow its move
// from the state from (keepalived's vrrp_sync_master, vrrp_sync_backup and
// group fault). Leaving FAULT needs no following: retrack brings up every
// member once no member has a fault of its own.
func (c *core) followGroup(now time.Time, in *instance, from State) []action {
	if in.group == "" || c.syncing {
		return nil
	}
	c.syncing = true
	defer func() { c.syncing = false }()
	var acts []action
	for _, o := range c.groups[in.group] {
		switch {
		case o == in:
		case in.state == Master && o.state == Backup:
			acts = append(acts, c.enterMaster(now, o, ReasonSyncGroup)...)
		case in.state == Backup && from == Master && o.state == Master:
			acts = append(acts, c.enterBackup(now, o, o.cfg.AdvertInterval, ReasonSyncGroup)...)
		case in.state == Fault && (o.state == Backup || o.state == Master):
			acts = append(acts, c.enterFault(now, o, ReasonSyncGroup)...)
		}
	}
	return acts
}

// groupHasFault reports whether a member of in's group has its own fault.
func (c *core) groupHasFault(in *instance) bool {
	if in.group == "" {
		return false
	}
	for _, o := range c.groups[in.group] {
		if o.ownFault {
			return true
		}
	}
	return false
}

// groupReached asks for the notify scripts of in's sync group when in's
// move left every member in the same state, MASTER, BACKUP or FAULT, and
// the group had not notified that state yet: once per group state change
// (keepalived's send_group_notifies).
func (c *core) groupReached(in *instance) []action {
	st := in.state
	if in.group == "" || (st != Master && st != Backup && st != Fault) || c.groupState[in.group] == st {
		return nil
	}
	for _, o := range c.groups[in.group] {
		if o.state != st {
			return nil
		}
	}
	c.groupState[in.group] = st
	return []action{{kind: actGroupNotify, group: in.group, note: st.String()}}
}

// groupsStopped runs the notify_stop of every sync group, as keepalived's
// notify_shutdown after the instances' own.
func (c *core) groupsStopped() []action {
	var acts []action
	for _, g := range c.groupCfg {
		c.groupState[g.Name] = Init
		acts = append(acts, action{kind: actGroupNotify, group: g.Name, note: "STOP"})
	}
	return acts
}

// syncGroup returns the configuration of group name.
func (c *core) syncGroup(name string) (SyncGroupConfig, bool) {
	for _, g := range c.groupCfg {
		if g.Name == name {
			return g, true
		}
	}
	return SyncGroupConfig{}, false
}
