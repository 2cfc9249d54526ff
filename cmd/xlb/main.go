// Command xlb is the xlb layer-4 load balancer: one binary for the daemon
// and its command-line tools.
package main

import (
	"fmt"
	"os"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "version" {
		fmt.Println("xlb", version)
		return
	}
	fmt.Fprintln(os.Stderr, "usage: xlb version")
	os.Exit(2)
}
