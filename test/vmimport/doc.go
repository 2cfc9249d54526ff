// Package vmimport checks `xlb import keepalived` against keepalived
// itself, inside the test VM (see test/vm), whose kernel has IPVS: for
// samples of Debian's keepalived package that keepalived accepts, it runs
// keepalived on the file and, separately, `xlb run` on the imported
// configuration (mode = "ipvs"), in a fresh network namespace each, and
// compares `ipvsadm -Ln` once every real server is in (services,
// schedulers, persistence, forwarding methods, weights); and it captures the
// VRRP advertisements keepalived and xlb send from the same file and
// compares their VRID, version, priority, interval, authentication and
// addresses. `xlb import ipvsadm` is checked against `ipvsadm-save -n` of
// rules added in the VM. The tests are tagged vmtest and run from TestVM
// (make test-vm), which ships keepalived, ipvsadm and the samples.
package vmimport
