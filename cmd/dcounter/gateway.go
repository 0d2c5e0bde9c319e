package main

import (
	"context"
	"fmt"
	"io"
	"net"

	"github.com/dcounter/dcounter/internal/clusterkey"
	"github.com/dcounter/dcounter/internal/gateway"
	"github.com/spf13/cobra"
)

const gatewayHelp = `
Runs the API gateway: one HTTP entry point serving the same counter routes as
a node. Every read and write of a counter goes to that counter's home node
(consistent hashing over the nodes) while it is healthy, so a client reads its
own writes; when the home is down, the next node in the counter's order takes
over. Listings go to the least busy healthy node. GET /counters/KEY?min=N is
answered only by a node whose value is at least N (waiting up to
--min-read-wait for gossip), else 503.
It health-checks every node each --health-interval and fails over: a request
is tried on another node only when it certainly did not reach the first
(connection refused, or the node answered 503), at most --max-tries times.
GET /nodes shows every node's health and value of "default"; GET /health is
200 while at least one node is healthy.

Writes with an Idempotency-Key header always go to the counter's home node,
which applies them at most once and replays the first answer to retries.

Nodes come from --nodes (client API URLs, or names that resolve to them:
dns+host:port for every A/AAAA record of host, dnssrv+name for every target of
name's SRV records, each optionally with https:// after the +, re-resolved
every --resolve-interval), --discovery, or both. A node that discovery (or a
name) stops listing keeps its traffic for 5s while it passes its health
checks (a restarted discovery server lists nobody until the next heartbeats),
then gets only the keyed writes it is the home of.

With --cluster-key (the nodes' key), a node gets client traffic only after it
has proven, with the key and a fresh challenge at every health check, that it
is a member of --cluster at the address the gateway uses; whatever discovery
or --nodes lists gets nothing until then, and discovery requests are signed
with the key. Without a key (development), any address that answers its
health check gets traffic, and the gateway refuses to listen on an address
other machines can reach unless --insecure is given.

Clients authenticate with bearer tokens from --auth-file, as on a node. With
--cluster-key the gateway passes each client's role and name on to the node,
signed with the key, instead of the token; without it, it passes the client's
Authorization header on and the node checks the token itself.
`

func gatewayCommand() *cobra.Command {
	c := newCommand("gateway --http-addr H:P (--discovery URL[,…] | --nodes URL,…) [flags]", "run the API gateway that balances clients over healthy nodes", gatewayHelp)
	fs := c.Flags()
	var (
		addr, nodes, disc string
		cfg               gateway.Config
	)
	fs.StringVar(&addr, "http-addr", "127.0.0.1:8000", "`host:port` to serve on")
	fs.StringVar(&nodes, "nodes", "", "comma-separated node client API `URL`s (http://host:port), or names resolving to them: dns+host:port (every A/AAAA record; dns+https://host:port for TLS) or dnssrv+name (every SRV target, with its port)")
	fs.DurationVar(&cfg.ResolveInterval, "resolve-interval", gateway.DefaultResolveInterval, "re-resolve the dns+ and dnssrv+ names of --nodes this often")
	fs.StringVar(&disc, "discovery", "", "comma-separated discovery server `URL`s to find nodes through")
	fs.DurationVar(&cfg.HealthInterval, "health-interval", gateway.DefaultHealthInterval, "how often every node is health-checked")
	fs.DurationVar(&cfg.HealthTimeout, "health-timeout", gateway.DefaultHealthTimeout, "how long one health check may take")
	fs.IntVar(&cfg.MaxTries, "max-tries", gateway.DefaultMaxTries, "how many nodes one request may be tried on")
	fs.DurationVar(&cfg.ProxyTimeout, "proxy-timeout", gateway.DefaultProxyTimeout, "how long one proxied request may take")
	fs.DurationVar(&cfg.MinReadWait, "min-read-wait", gateway.DefaultMinReadWait, "how long a read with ?min=N may wait for a node to reach N")
	var kf keyFlags
	kf.register(fs, "prove nodes and sign discovery requests and forwarded identities")
	var insecure bool
	fs.StringVar(&cfg.Cluster, "cluster", gateway.DefaultCluster, "cluster `name` nodes must prove membership of")
	fs.BoolVar(&insecure, "insecure", false, "allow serving without --cluster-key on an address other machines can reach (any address listed by discovery or --nodes that answers a health check then gets client traffic)")
	fs.IntVar(&cfg.MaxNodes, "max-nodes", gateway.DefaultMaxNodes, "most nodes tracked from discovery")
	var af apiFlags
	af.register(fs, true)
	var tlsCA string
	fs.StringVar(&tlsCA, "tls-ca", "", "PEM CA `file` that nodes' and discovery servers' certificates are verified with; nodes that discovery lists without a scheme are then reached over https, and the gateway presents its --tls-cert to nodes that require client certificates")
	var sf serverFlags
	sf.register(c)
	return finish(c, envServer, func(ctx context.Context, pos []string, stdout, stderr io.Writer) int {
		logger, stopDebug, code, ok := sf.start("gateway", pos, stderr)
		if !ok {
			return code
		}
		defer stopDebug()
		cfg.Nodes, cfg.Discovery, cfg.Logger = splitList(nodes), splitList(disc), logger
		cfg.Metrics = gateway.NewMetrics()
		if len(cfg.Nodes) == 0 && len(cfg.Discovery) == 0 {
			fmt.Fprintln(stderr, "dcounter gateway: give --nodes URL,… or --discovery URL (or both)")
			return exitUsage
		}
		var err error
		if cfg.Keyring, err = kf.keyring(); err != nil {
			fmt.Fprintf(stderr, "dcounter gateway: %v\n", err)
			return exitUsage
		}
		if cfg.Keyring.Empty() && !insecure && !loopback(addr) {
			fmt.Fprintf(stderr, "dcounter gateway: --http-addr %s can be reached from other machines, but without a cluster key the\n"+
				"gateway cannot tell real nodes from any address discovery or --nodes lists: client writes could go to\n"+
				"an impostor. Set --cluster-key (or DCOUNTER_CLUSTER_KEY; the nodes' key), or pass --insecure on a\n"+
				"network you trust.\n", addr)
			return exitUsage
		}
		if err := af.checkExposure("--http-addr", addr); err != nil {
			fmt.Fprintf(stderr, "dcounter gateway: %v.\n", err)
			return exitUsage
		}
		sec, err := af.build(clusterkey.Keyring{}, logger) // the gateway believes no forwarded identity
		if err != nil {
			fmt.Fprintf(stderr, "dcounter gateway: %v\n", err)
			return exitUsage
		}
		if cfg.TLS, err = clientTLS(tlsCA, sec.tls); err != nil {
			fmt.Fprintf(stderr, "dcounter gateway: %v\n", err)
			return exitUsage
		}
		if sec.guard != nil {
			cfg.Auth = sec.guard
		}
		cfg.ServerTLS = sec.serverTLS()
		g, err := gateway.New(cfg)
		if err != nil {
			fmt.Fprintf(stderr, "dcounter gateway: %v\n", err)
			return exitUsage
		}
		defer g.Close()
		onHangup(ctx, func() { sec.reload(logger) })
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			logger.Error("cannot listen", "addr", addr, "err", err)
			return 1
		}
		_, h := g.Health()
		logger.Info("gateway started", "http_addr", ln.Addr().String(), "nodes", h.Nodes, "healthy", h.HealthyNodes,
			"proven_members_only", !cfg.Keyring.Empty(), "cluster", cfg.Cluster, "key_ids", cfg.Keyring.IDs())
		if err := g.Run(ctx, ln); err != nil {
			logger.Error("server stopped", "err", err)
			return 1
		}
		logger.Info("gateway stopped")
		return 0
	})
}
