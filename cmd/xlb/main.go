// Command xlb is the xlb layer-4 load balancer: one binary for the daemon
// (`xlb run`) and its tools (`xlb check`, `xlb status`, `xlb reload`).
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/control"
	"github.com/xlb-dev/xlb/dataplane/open"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

const defaultConfig = "/etc/xlb/xlb.toml"

const usage = `usage: xlb <command> [flags]

commands:
  run     --config FILE                  run the daemon in the foreground
  check   [--offline] --config FILE      validate a configuration (every error as FILE:LINE);
                                         --offline: without this host's interfaces, subnets and scripts
  import  keepalived --config FILE [--out FILE] [--instance NAME]
                                         convert a keepalived.conf to xlb's TOML
  import  ipvsadm [--file FILE] [--out FILE]
                                         convert ipvsadm-save -n output (default stdin)
  status  [--json] [--stats|--rate] [--socket PATH | --config FILE]
                                         show services, real servers and VRRP instances
  reload  [--socket PATH | --config FILE]
                                         reload the daemon's configuration (as SIGHUP)
  drain   [--socket PATH | --config FILE]
                                         take this director out of service, the daemon running:
                                         BGP GRACEFUL_SHUTDOWN, drain_time, withdrawal; VRRP
                                         instances resign (priority 0) and stay released
  undrain [--socket PATH | --config FILE]
                                         put it back in service
  set-weight [--socket PATH | --config FILE] SERVICE ADDR[:PORT] WEIGHT
                                         set a real server's weight (as ipvsadm -e; 0 drains) until
                                         reset-weight or a configuration change of that real server;
                                         kept across a restart of the daemon
  reset-weight [--socket PATH | --config FILE] SERVICE ADDR[:PORT]
                                         back to the configured weight
  version                                print the version
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "run":
		return cmdRun(args, stderr)
	case "check":
		return cmdCheck(args, stdout, stderr)
	case "import":
		return cmdImport(args, os.Stdin, stdout, stderr)
	case "status":
		return cmdStatus(args, stdout, stderr)
	case "reload":
		return cmdReload(args, stdout, stderr)
	case "drain", "undrain":
		return cmdSimple(cmd, args, stdout, stderr)
	case "set-weight", "reset-weight":
		return cmdWeight(cmd, args, stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "xlb", version)
		return 0
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "xlb: unknown command %q\n%s", cmd, usage)
	return 2
}

func flags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("xlb "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func cmdRun(args []string, stderr io.Writer) int {
	// Allocations are sampled for heap profiles only when [debug]
	// pprof_listen serves them (control.NewDaemon turns sampling on): Go's
	// default sampling kept a 1.4 MB table of its buckets, and their
	// stacks, for profiles no one could read. A rate GODEBUG set
	// (memprofilerate=1: every allocation) is left alone.
	if runtime.MemProfileRate == control.DefaultMemProfileRate {
		runtime.MemProfileRate = 0
	}
	fs := flags("run", stderr)
	cfgPath := fs.String("config", defaultConfig, "configuration file")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if fs.Parse(args) != nil {
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "xlb run: --log-level: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	d, err := control.NewDaemon(control.DaemonOptions{
		ConfigPath: *cfgPath, Version: version, Logger: log, Ready: sdNotifyReady,
	})
	if err != nil {
		fmt.Fprintf(stderr, "xlb run: %v\n", err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	go func() {
		stopping := false
		for s := range sigs {
			if s == syscall.SIGHUP {
				_ = d.Reload() // logged and counted; the old configuration keeps serving
				continue
			}
			log.Info("signal", "signal", s.String())
			if stopping {
				d.ForceStop() // a second signal: no grace period
				continue
			}
			stopping = true
			cancel()
		}
	}()
	if err := d.Run(ctx); err != nil {
		log.Error("xlb stopped", "error", err)
		return 1
	}
	return 0
}

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := flags("check", stderr)
	cfgPath := fs.String("config", defaultConfig, "configuration file")
	offline := fs.Bool("offline", false, "skip the checks that read this host (interfaces, subnets, scripts, users)")
	if fs.Parse(args) != nil {
		return 2
	}
	var env config.Env = config.SystemEnv()
	if *offline {
		env = nil
	}
	cfg, err := config.Load(*cfgPath, env)
	if err == nil {
		// The limits of the dataplane the configuration asks for, which
		// check does not open.
		err = control.CheckConfig(*cfgPath, cfg, open.Limits(cfg.Dataplane.Mode))
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(stderr, "warning: %v\n", w)
	}
	fmt.Fprintf(stdout, "%s: OK (%d virtual servers, %d VRRP instances)\n", *cfgPath, len(cfg.VirtualServers), len(cfg.VRRPInstances))
	return 0
}

// socketFlags adds --socket and --config and returns a resolver of the
// control socket's path.
func socketFlags(fs *flag.FlagSet) func() (string, error) {
	sock := fs.String("socket", "", "control socket (default: from --config, else "+config.DefaultSocket+")")
	cfgPath := fs.String("config", "", "read the control socket's path from this configuration")
	return func() (string, error) {
		if *sock != "" {
			return *sock, nil
		}
		if *cfgPath != "" {
			cfg, err := config.Load(*cfgPath, nil)
			if err != nil {
				return "", err
			}
			return cfg.Control.Socket, nil
		}
		return config.DefaultSocket, nil
	}
}

func cmdStatus(args []string, stdout, stderr io.Writer) int {
	fs := flags("status", stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	stats := fs.Bool("stats", false, "show packet, byte and connection totals (as ipvsadm --stats)")
	rate := fs.Bool("rate", false, "show per-second rates (as ipvsadm --rate)")
	socket := socketFlags(fs)
	if fs.Parse(args) != nil {
		return 2
	}
	path, err := socket()
	if err != nil {
		fmt.Fprintf(stderr, "xlb status: %v\n", err)
		return 1
	}
	// The daemon prints the status (as ipvsadm, or JSON) and this copies
	// it: tens of MB at 65,536 real servers, decoded and printed nowhere
	// else.
	output := "text"
	switch {
	case *asJSON:
		output = "json"
	case *stats:
		output = "stats"
	case *rate:
		output = "rate"
	}
	out := bufio.NewWriterSize(stdout, 64<<10)
	err = control.CallOutput(path, control.Request{Command: "status", Rates: *rate, Output: output}, out)
	if ferr := out.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		fmt.Fprintf(stderr, "xlb status: %v\n", err)
		return 1
	}
	return 0
}

func cmdReload(args []string, stdout, stderr io.Writer) int {
	return cmdSimple("reload", args, stdout, stderr)
}

// cmdSimple sends a command without arguments (reload, drain, undrain)
// and prints the daemon's answer.
func cmdSimple(name string, args []string, stdout, stderr io.Writer) int {
	fs := flags(name, stderr)
	socket := socketFlags(fs)
	if fs.Parse(args) != nil {
		return 2
	}
	path, err := socket()
	if err != nil {
		fmt.Fprintf(stderr, "xlb %s: %v\n", name, err)
		return 1
	}
	resp, err := control.Call(path, control.Request{Command: name})
	if err != nil {
		fmt.Fprintf(stderr, "xlb %s: %v\n", name, err)
		return 1
	}
	fmt.Fprintln(stdout, resp.Message)
	return 0
}

// sdNotifyReady tells systemd (Type=notify) that the daemon is ready.
func sdNotifyReady() {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return
	}
	defer c.Close()
	_, _ = c.Write([]byte("READY=1"))
}

// cmdWeight sends set-weight SERVICE ADDR[:PORT] WEIGHT or reset-weight
// SERVICE ADDR[:PORT] and prints the daemon's answer.
func cmdWeight(name string, args []string, stdout, stderr io.Writer) int {
	fs := flags(name, stderr)
	socket := socketFlags(fs)
	if fs.Parse(args) != nil {
		return 2
	}
	want, syntax := 3, "SERVICE ADDR[:PORT] WEIGHT"
	if name == "reset-weight" {
		want, syntax = 2, "SERVICE ADDR[:PORT]"
	}
	if fs.NArg() != want {
		fmt.Fprintf(stderr, "usage: xlb %s [--socket PATH | --config FILE] %s\n", name, syntax)
		return 2
	}
	req := control.Request{Command: name, Service: fs.Arg(0), Real: fs.Arg(1)}
	if name == "set-weight" {
		w, err := strconv.Atoi(fs.Arg(2))
		if err != nil || w < 0 || w > 65535 {
			fmt.Fprintf(stderr, "xlb %s: weight %q: want an integer from 0 to 65535\n", name, fs.Arg(2))
			return 2
		}
		req.Weight = w
	}
	path, err := socket()
	if err != nil {
		fmt.Fprintf(stderr, "xlb %s: %v\n", name, err)
		return 1
	}
	resp, err := control.Call(path, req)
	if err != nil {
		fmt.Fprintf(stderr, "xlb %s: %v\n", name, err)
		return 1
	}
	fmt.Fprintln(stdout, resp.Message)
	return 0
}
