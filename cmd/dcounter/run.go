package main

import (
	"context"
	"fmt"
	"io"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"node", "run a replica (gossip + client API)", runNode},
		{"discovery", "run a discovery server that nodes register with to find peers", runDiscovery},
		{"gateway", "run the API gateway that balances clients over healthy nodes", runGateway},
		{"inc", "increment a counter: inc [KEY] [--by N] [--ttl DURATION]", clientVerb("inc")},
		{"dec", "decrement a counter: dec [KEY] [--by N] [--ttl DURATION]", clientVerb("dec")},
		{"get", "read a counter: get [KEY]", clientVerb("get")},
		{"del", "delete a counter everywhere: del KEY", runDel},
		{"ttl", "show or set a counter's expiry: ttl KEY [SECONDS]", runTTL},
		{"persist", "remove a counter's expiry: persist KEY", runPersist},
		{"keys", "list live counters: keys [PREFIX] [--limit N]", runKeys},
		{"nodes", "list the members a node (or gateway) sees", runNodes},
		{"status", "show a node's health summary", runStatus},
		{"health", "exit 0 if the node at URL is healthy (for container health checks)", runHealth},
		{"keygen", "print a new random cluster key for --cluster-key", runKeygen},
		{"secrets", "create a secrets dir (cluster key, client tokens) for a secure cluster", runSecrets},
		{"version", "print the version", func(_ context.Context, _ []string, stdout, _ io.Writer) int {
			fmt.Fprintln(stdout, "dcounter", version)
			return 0
		}},
	}
}

const exitUsage = 2

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "dcounter: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprint(w, `dcounter — a replicated counter service that keeps counting through crashes and partitions.

Usage:
  dcounter <command> [arguments]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Every flag can also be set through an environment variable: --gossip-addr
reads DCOUNTER_GOSSIP_ADDR, and so on. A flag on the command line wins.

Run "dcounter <command> --help" for a command's flags.
`)
}
