package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/dcounter/dcounter/internal/clock"
	"github.com/dcounter/dcounter/internal/gctune"
	"github.com/dcounter/dcounter/internal/joinaddr"
	"github.com/dcounter/dcounter/internal/node"
	"github.com/dcounter/dcounter/internal/respserver"
	"github.com/dcounter/dcounter/internal/wal"
	"github.com/spf13/cobra"
)

const nodeHelp = `
Runs one replica. It accepts increments and decrements over HTTP at any time,
even when cut off from its peers, and converges with them by gossip over TCP.

With --join it joins the cluster through any live member (the first that
answers); dns+host:port and dnssrv+name entries are resolved, and re-resolved
while it runs, so that members added later are found; with --discovery it registers with the discovery server and joins
through the peers it lists (and keeps doing so while it runs); with neither,
it starts a new cluster. If no --join target or discovery server answers
within --join-timeout it exits with an error, unless --bootstrap is given.

Every acknowledged write is in the write-ahead log under --data-dir first
(fsynced, with the default --fsync always), so a node killed at any moment
restarts with everything it acknowledged. Only one process may use a data dir.

Clients authenticate with bearer tokens from --auth-file (roles read, write,
admin); without one, the client API must stay on a loopback address unless
--insecure-api is given. --tls-cert/--tls-key serve it over HTTPS.

With --resp-addr the node also speaks the Redis protocol: INCR, INCRBY, GET,
DEL, EXPIRE, SCAN ... from any Redis client, AUTH with the same tokens, TLS
with the same certificate, replies sent only once the write is durable.

Example: a three-node cluster on one machine
  dcounter node --name n1 --gossip-addr 127.0.0.1:7946 --http-addr 127.0.0.1:8080 --data-dir /tmp/n1
  dcounter node --name n2 --gossip-addr 127.0.0.1:7947 --http-addr 127.0.0.1:8081 --data-dir /tmp/n2 --join 127.0.0.1:7946
  dcounter node --name n3 --gossip-addr 127.0.0.1:7948 --http-addr 127.0.0.1:8082 --data-dir /tmp/n3 --join 127.0.0.1:7946
`

func nodeCommand() *cobra.Command {
	c := newCommand("node [flags]", "run a replica (gossip + client API)", nodeHelp)
	fs := c.Flags()
	var (
		cfg             node.Config
		join            string
		kf              keyFlags
		fsync           string
		inMemory        bool
		disc            string
		insecure        bool
		clockShift      time.Duration
		shutdownTimeout time.Duration
	)
	fs.StringVar(&cfg.Name, "name", hostname(), "human-readable member `name`")
	fs.StringVar(&cfg.GossipAddr, "gossip-addr", node.DefaultGossipAddr, "TCP `host:port` to listen on for peers")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", "127.0.0.1:8080", "`host:port` of the client HTTP API")
	fs.StringVar(&cfg.RESPAddr, "resp-addr", "", "`host:port` of the Redis-protocol (RESP2/RESP3) client listener, e.g. 127.0.0.1:6379: redis-cli, redis-benchmark and Redis client libraries count through it (default: off). Same tokens (AUTH) and TLS as the HTTP API")
	fs.IntVar(&cfg.RESPMaxClients, "resp-max-clients", respserver.DefaultMaxClients, "Redis-protocol connections served at once; one more is answered \"ERR max number of clients reached\" and closed")
	fs.DurationVar(&cfg.RESPIdleTimeout, "resp-idle-timeout", 0, "close a Redis-protocol connection that sent nothing for this `duration` (0: never, as Redis's timeout 0; a connection that has not authenticated is closed after 60s either way)")
	fs.StringVar(&cfg.AdvertiseAddr, "advertise-addr", "", "`host:port` peers dial to reach this node (default: the gossip address)")
	fs.StringVar(&cfg.AdvertiseHTTPAddr, "advertise-http-addr", "", "`host:port` of the client API as given to peers, discovery and gateways (default: the HTTP address; with a wildcard one, the advertised host with the HTTP port)")
	fs.StringVar(&join, "join", "", "comma-separated list of members to join through (any live one will do): `host:port`, dns+host:port (every A/AAAA record of host, e.g. a Kubernetes headless Service) or dnssrv+name (every target of name's SRV records, e.g. dnssrv+_gossip._tcp.dcounter.ns.svc.cluster.local); names are re-resolved every --join-interval")
	fs.DurationVar(&cfg.JoinInterval, "join-interval", node.DefaultJoinInterval, "re-resolve the dns+ and dnssrv+ names of --join this often, and join every address they give that is not a live member (sooner, from 1s, while one does not answer)")
	fs.StringVar(&disc, "discovery", "", "comma-separated discovery server `URL`s to register with and find peers through")
	fs.DurationVar(&cfg.DiscoveryInterval, "discovery-interval", node.DefaultDiscoveryInterval, "discovery heartbeat `period`")
	fs.BoolVar(&cfg.Bootstrap, "bootstrap", false, "start a new cluster if no --join target (or discovery server) answers, instead of exiting")
	fs.DurationVar(&cfg.SuspectAfter, "suspect-after", node.DefaultSuspectAfter, "a member silent this long is suspect")
	fs.DurationVar(&cfg.DeadAfter, "dead-after", node.DefaultDeadAfter, "a suspect silent this long, confirmed by other members, is dead (not gossiped with; its counts stay)")
	fs.DurationVar(&cfg.JoinTimeout, "join-timeout", node.DefaultJoinTimeout, "how long to wait for a --join target to answer")
	fs.StringVar(&cfg.Cluster, "cluster", node.DefaultCluster, "cluster `name`; frames from other clusters are dropped")
	kf.register(fs, "connect (and to check identities gateways pass on)")
	fs.StringVar(&cfg.DataDir, "data-dir", "", "`dir`ectory for this replica's identity, write-ahead log and snapshots (required unless --in-memory)")
	fs.BoolVar(&inMemory, "in-memory", false, "keep state in memory only: nothing survives a restart, and every start is a new replica")
	fs.StringVar(&fsync, "fsync", "always", "when a write is made durable before it is acknowledged: `always` (fsync first), interval (fsync every --fsync-interval), none (leave it to the OS)")
	fs.DurationVar(&cfg.FsyncInterval, "fsync-interval", time.Second, "fsync `period` under --fsync interval")
	fs.DurationVar(&cfg.SnapshotInterval, "snapshot-interval", node.DefaultSnapshotInterval, "write a snapshot this often if anything was logged (also when a 64 MiB log segment fills, and on shutdown)")
	fs.BoolVar(&insecure, "insecure-gossip", false, "allow gossip without --cluster-key on an address other machines can reach (anyone who can reach it can then set any counter)")
	fs.BoolVar(&cfg.NewReplica, "new-replica", false, "take a new replica ID at start: required after restoring --data-dir from a backup or copying it")
	fs.DurationVar(&cfg.IdempotencyWindow, "idempotency-window", node.DefaultIdempotencyWindow, "how long a write's Idempotency-Key is remembered (durably) so that retries are not applied twice")
	fs.BoolVar(&cfg.DiscardCorrupt, "discard-corrupt", false, "start even if the log is corrupt: skip the bad data and take a new replica ID (see README: recovering from a corrupt log)")
	fs.DurationVar(&cfg.SyncInterval, "sync-interval", node.DefaultSyncInterval, "anti-entropy and member-gossip `period`")
	fs.IntVar(&cfg.Fanout, "fanout", node.DefaultFanout, "`peers` each fresh change is pushed to")
	fs.DurationVar(&cfg.DeltaGap, "delta-gap", 0, "least `duration` between two gossip pushes of this node while changes keep coming (at most 1s): longer puts more changes in each message and costs less CPU per write, shorter makes writes visible on other nodes sooner; a change after a quiet gap still leaves within 5ms (default 0: 2.5ms per peer, at most 100ms)")
	fs.DurationVar(&cfg.MaxClockSkew, "max-clock-skew", node.DefaultMaxClockSkew, "warn (at most once a minute per member) when a member's wall clock differs from ours by more than this `duration`; offsets are exported as dcounter_member_clock_offset_seconds either way, and membership and idempotency never depend on them")
	fs.DurationVar(&cfg.ExpiryGrace, "expiry-grace", 0, "keep an expired key's counts this `duration` past its deadline before freeing them, so replicas whose clocks run behind by less still agree on what it read before the deadline (default 2×--max-clock-skew)")
	fs.DurationVar(&cfg.MemberHorizon, "member-horizon", 0, "forget a member dead or left for this `duration` (measured on this node's clock from when it saw it go): it stops costing memory and gossip, its counts stay, and it rejoins if it comes back; a member cut off for longer is no longer looked for (default: --reclaim-horizon)")
	fs.DurationVar(&shutdownTimeout, "shutdown-timeout", node.DefaultShutdownTimeout, "on SIGTERM, give the drain and in-flight client requests (HTTP and Redis protocol) at most this `duration`; the goodbye adds at most 1s, then the final snapshot; set the orchestrator's grace period (terminationGracePeriodSeconds) above the sum")
	fs.DurationVar(&cfg.ReclaimHorizon, "reclaim-horizon", node.DefaultReclaimHorizon, "forget a deleted or expired key's tombstone after this `duration`; a replica cut off for longer that held an older generation of the key can bring it back, so keep it above the longest outage you would let a node rejoin after")
	fs.DurationVar(&cfg.ShutdownDrain, "shutdown-drain", node.DefaultShutdownDrain, "on SIGTERM, refuse client requests with 503 (certainly not applied: gateways retry them on another node) for at most this `duration`, or until none came for 100ms, before closing the client API; without it a write a gateway sends on a kept-alive connection just as the node closes it may end in doubt (502). 0 turns it off")
	fs.DurationVar(&clockShift, "clock-offset", 0, "testing aid: shift this node's wall clock by `duration` (e.g. -1h, 48h), as if the system clock were wrong; timers and elapsed times are unaffected. Used to reproduce and test clock skew")
	var af apiFlags
	af.register(fs, true)
	var tlsCA string
	fs.StringVar(&tlsCA, "tls-ca", "", "PEM CA `file` to verify https:// discovery servers with (default: the system's roots)")
	var sf serverFlags
	sf.register(c)
	completeValues(c, "fsync", "always", "interval", "none")
	return finish(c, envServer, func(ctx context.Context, pos []string, stdout, stderr io.Writer) int {
		logger, stopDebug, code, ok := sf.start("node", pos, stderr)
		if !ok {
			return code
		}
		defer stopDebug()
		cfg.Logger = logger
		if cfg.ShutdownDrain == 0 {
			cfg.ShutdownDrain = -1 // the flag's 0 means off; the Config's, the default
		}
		if clockShift != 0 {
			cfg.Clock = clock.Offset{Clock: clock.Real{}, D: clockShift}
			logger.Warn("wall clock shifted by --clock-offset (a testing aid)", "offset", clockShift)
		}
		cfg.Join = splitList(join)
		if _, err := joinaddr.ParseList(cfg.Join); err != nil {
			fmt.Fprintf(stderr, "dcounter node: --join: %v\n", err)
			return exitUsage
		}
		cfg.Discovery = splitList(disc)
		var err error
		if cfg.ClusterKeys, err = kf.keyring(); err != nil {
			fmt.Fprintf(stderr, "dcounter node: %v\n", err)
			return exitUsage
		}
		switch {
		case cfg.DataDir == "" && !inMemory:
			fmt.Fprintln(stderr, "dcounter node: --data-dir is required: it holds the write-ahead log that keeps acknowledged writes across crashes.\nPass --in-memory to run without persistence (every restart is then a new replica).")
			return exitUsage
		case cfg.DataDir != "" && inMemory:
			fmt.Fprintln(stderr, "dcounter node: --data-dir and --in-memory exclude each other")
			return exitUsage
		}
		if cfg.Fsync, err = wal.ParseSyncPolicy(fsync); err != nil {
			fmt.Fprintf(stderr, "dcounter node: --fsync %q: want always, interval or none\n", fsync)
			return exitUsage
		}
		if cfg.ClusterKeys.Empty() && !insecure && !loopback(cfg.GossipAddr) {
			fmt.Fprintf(stderr, "dcounter node: --gossip-addr %s can be reached from other machines, but gossip is unauthenticated\n"+
				"without a cluster key: anyone who can reach the port could set any counter. Set --cluster-key (or\n"+
				"DCOUNTER_CLUSTER_KEY; make one with 'dcounter keygen'), or pass --insecure-gossip on a network you trust.\n", cfg.GossipAddr)
			return exitUsage
		}
		if err := checkAdvertise(cfg.GossipAddr, cfg.AdvertiseAddr); err != nil {
			fmt.Fprintf(stderr, "dcounter node: %v\n", err)
			return exitUsage
		}
		if err := af.checkExposure("--http-addr", cfg.HTTPAddr); err != nil {
			fmt.Fprintf(stderr, "dcounter node: %v.\n", err)
			return exitUsage
		}
		if cfg.RESPAddr != "" {
			if err := af.checkExposure("--resp-addr", cfg.RESPAddr); err != nil {
				fmt.Fprintf(stderr, "dcounter node: %v.\n", err)
				return exitUsage
			}
		}
		// The keyring also verifies identities that gateways forward.
		sec, err := af.build(cfg.ClusterKeys, logger)
		if err != nil {
			fmt.Fprintf(stderr, "dcounter node: %v\n", err)
			return exitUsage
		}
		if sec.guard != nil {
			cfg.Auth = sec.guard
		}
		if sec.tokens != nil {
			cfg.Tokens = sec.tokens
		}
		cfg.TLS = sec.serverTLS()
		if cfg.DiscoveryTLS, err = clientTLS(tlsCA, nil); err != nil {
			fmt.Fprintf(stderr, "dcounter node: %v\n", err)
			return exitUsage
		}
		onHangup(ctx, func() { sec.reload(logger) })

		// A node's live heap grows with its keyspace: keep the collector's
		// headroom bounded (unless GOGC says otherwise).
		go gctune.Run(ctx, time.Second)

		n, err := node.New(ctx, cfg)
		if err != nil {
			logger.Error("cannot start", "err", err)
			if errors.Is(err, node.ErrConfig) {
				return exitUsage // a value that means nothing, as a bad flag is
			}
			return 1
		}
		if err := n.Run(ctx, shutdownTimeout); err != nil {
			// A timeout only cut in-flight requests short; anything else (a
			// failed final snapshot, say) means the stop was not clean.
			logger.Error("shutdown", "err", err)
			return 1
		}
		return 0
	})
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// checkAdvertise refuses a wildcard listen address without an explicit
// advertise address: peers could not dial 0.0.0.0 back.
func checkAdvertise(listen, advertise string) error {
	if advertise != "" {
		return nil
	}
	host := listen
	if i := strings.LastIndex(listen, ":"); i >= 0 {
		host = listen[:i]
	}
	switch strings.Trim(host, "[]") {
	case "", "0.0.0.0", "::":
		return fmt.Errorf("--gossip-addr %s listens on all interfaces: set --advertise-addr to the address peers should dial", listen)
	}
	return nil
}

// loopback reports whether addr's host is a loopback address (or
// "localhost"), reachable from this machine only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "dcounter"
	}
	return h
}
