package vrrp

import "time"

// Sync groups: members follow each other to MASTER, BACKUP and FAULT
// (keepalived's vrrp_sync_group).

func (c *core) setGroups(gs []SyncGroupConfig) {
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
