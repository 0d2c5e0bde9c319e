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
		{"members", "the same as nodes", nodesVerb("members")},
		{"status", "show a node's health summary", runStatus},
		{"health", "exit 0 if the node at URL is healthy (for container health checks)", runHealth},
		{"keygen", "print a new random cluster key for --cluster-key", runKeygen},
		{"secrets", "create a secrets dir (cluster key, client tokens) for a secure cluster", runSecrets},
		{"version", "print the version", runVersion},
		{"completion", "print a shell completion script: completion bash|zsh|fish", runCompletion},
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
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Flags can also be set through environment variables, a flag on the command
line winning. The servers (node, gateway, discovery) read every flag so:
--gossip-addr from DCOUNTER_GOSSIP_ADDR, and so on, or first from a variable
scoped to the command (DCOUNTER_NODE_GOSSIP_ADDR, DCOUNTER_GATEWAY_HTTP_ADDR)
so that servers started from one shell need not share. The client verbs read
only how to reach the server: DCOUNTER_ADDR, DCOUNTER_TOKEN, DCOUNTER_CA,
DCOUNTER_CLIENT_CERT, DCOUNTER_CLIENT_KEY and DCOUNTER_TIMEOUT; their other
flags (--by, --ttl, --json, ...) come only from the command line.

Run "dcounter <command> --help" for a command's flags.
`)
}
