package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/xlb-dev/xlb/config/ipvsadm"
	"github.com/xlb-dev/xlb/config/keepalived"
)

// cmdImport converts another load balancer's configuration to xlb's TOML:
// the TOML on stdout (or --out), diagnostics on stderr as FILE:LINE:
// warning|error: ...; exit 0 when converted (warnings allowed), 1 when
// something cannot be converted, 2 on usage errors.
func cmdImport(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, "usage: xlb import keepalived --config FILE [--out FILE] [--instance NAME]\n       xlb import ipvsadm [--file FILE] [--out FILE]\n")
		return 2
	}
	from, args := args[0], args[1:]
	fs := flags("import "+from, stderr)
	out := fs.String("out", "", "write the TOML to this file instead of stdout")
	var (
		toml   []byte
		failed bool
	)
	switch from {
	case "keepalived":
		cfg := fs.String("config", "", "the keepalived configuration file")
		inst := fs.String("instance", "", "keepalived's configuration id (-i), for @ conditional lines")
		if fs.Parse(args) != nil {
			return 2
		}
		if *cfg == "" || fs.NArg() > 0 {
			fmt.Fprintln(stderr, "xlb import keepalived: --config FILE is required (and nothing else)")
			return 2
		}
		opts := keepalived.Options{}
		fs.Visit(func(f *flag.Flag) {
			if f.Name == "instance" {
				opts.Instance, opts.InstanceSet = *inst, true
			}
		})
		res := keepalived.Import(*cfg, opts)
		for _, d := range res.Diags {
			fmt.Fprintln(stderr, d)
		}
		toml, failed = res.TOML, res.Failed()
	case "ipvsadm":
		file := fs.String("file", "", "ipvsadm-save -n output (default: stdin)")
		if fs.Parse(args) != nil {
			return 2
		}
		if fs.NArg() > 0 {
			fmt.Fprintln(stderr, "xlb import ipvsadm: unexpected arguments")
			return 2
		}
		name, r := "<stdin>", stdin
		if *file != "" {
			f, err := os.Open(*file)
			if err != nil {
				fmt.Fprintf(stderr, "xlb import ipvsadm: %v\n", err)
				return 1
			}
			defer f.Close()
			name, r = *file, f
		}
		res, err := ipvsadm.Import(name, r)
		if err != nil {
			fmt.Fprintf(stderr, "xlb import ipvsadm: %v\n", err)
			return 1
		}
		for _, d := range res.Diags {
			fmt.Fprintln(stderr, d)
		}
		toml, failed = res.TOML, res.Failed()
	default:
		fmt.Fprintf(stderr, "xlb import: unknown source %q (keepalived or ipvsadm)\n", from)
		return 2
	}
	if failed || toml == nil {
		return 1
	}
	if *out == "" {
		_, err := stdout.Write(toml)
		if err != nil {
			return 1
		}
		return 0
	}
	if err := os.WriteFile(*out, toml, 0o644); err != nil {
		fmt.Fprintf(stderr, "xlb import: %v\n", err)
		return 1
	}
	return 0
}
