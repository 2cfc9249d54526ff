// Package vmdaemon runs `xlb run` end to end inside the test VM (see
// test/vm), whose kernel has what the host's lacks: IPVS and tunnel
// drivers. Its tests are tagged vmtest and run from TestVM (make test-vm):
//
//   - the namespace lab's daemon configuration (test/lab), the one the host
//     runs on XDP, on IPVS: DR and NAT, real HTTP through the VIP, status and
//     metrics, health checks taking a real server out, nothing left in IPVS
//     after SIGTERM;
//   - mode = "auto" on a director without BPF permission (the daemon keeps
//     CAP_NET_ADMIN only) falls back to IPVS and serves; mode = "xdp" there
//     fails loudly;
//   - XDP tunnel mode end to end: IPIP, IPv6-in-IPv6 and GUE to real servers
//     in other subnets that decapsulate and answer the client directly;
//   - connection sync with the kernel's IPVS sync daemon (ipvsadm
//     --start-daemon), both ways: an xlb director on XDP with [sync]
//     protocol = "ipvs" carries a kernel IPVS master's TCP streams after
//     SIGKILL of it, and a kernel IPVS backup carries an xlb master's.
//
// The test binary doubles as the capability wrapper: with
// XLB_VMDAEMON_KEEP_CAPS set it drops every capability but the listed ones
// from its bounding set and executes its arguments.
package vmdaemon
