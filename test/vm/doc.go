// Package vm boots a Debian kernel under qemu and runs Go tests inside it,
// for what the host kernel lacks (IPVS, IPIP).
//
// # How a run goes
//
// Run resolves the current Debian kernel package at run time (apt-cache
// depends linux-image-amd64: the archive keeps only the newest ABI), fetches
// it and busybox-static with apt-get download into a cache directory kept
// between runs (CacheDir), extracts them with dpkg-deb, and builds an
// initramfs holding busybox, the wanted kernel modules and their
// dependencies (from modules.dep, or the modules' own .modinfo when the
// package ships none, as Debian's does), host programs with their shared
// libraries (ip by default, so test/nettest works inside), extra files, and
// one static test binary per package, built with
//
//	CGO_ENABLED=0 go test -c -tags vmtest
//
// It boots the kernel with qemu-system-x86_64 (kvm where a probe boot shows
// that it really works, else tcg; XLB_VM_ACCEL=kvm|tcg overrides), runs the
// test binaries one after the other from /init, and reads the result from
// the serial console and qemu's exit status, which /init sets through the
// isa-debug-exit device. A VM that powers off, panics or times out without
// a result is a failure.
//
// # Writing tests that run inside the VM
//
// Tests meant for the VM are ordinary Go tests in their own package, in
// files guarded by the build tag vmtest:
//
//	//go:build vmtest
//
// so that `go test ./...` on the host neither builds nor runs them. They
// start with vm.RequireGuest(t), run as root in the VM's initial network
// namespace, may use test/nettest (ip is in the VM), and find the kernel's
// modules through modprobe (busybox, with modules.dep and modules.alias for
// the modules shipped). To have a package's vmtest tests run, add it to
// guestPackages in vm_test.go, with a -test.run pattern if only some tests
// should run; modules go in Config.Modules (DefaultModules is the base set),
// programs to build and ship, such as the xlb binary, in Config.Builds
// ({Path: "./cmd/xlb", Dst: "/usr/sbin/xlb"}), and other files in
// Config.Files. The host side,
// TestVM, is what `go test ./test/vm`, `make test-vm` and `make test` run.
//
// Environment: XLB_VM_CACHE sets the cache directory, XLB_VM_ACCEL forces
// the accelerator, XLB_VM_CONSOLE=1 copies the console to stderr as it
// comes, XLB_VM_PACKAGES (package paths, comma separated, e.g.
// ./test/vmimport) runs only those of guestPackages, and XLB_VM_RUN (a
// -test.run pattern) only those tests of theirs.
package vm
