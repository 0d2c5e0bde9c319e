package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"

	"github.com/dcounter/dcounter/internal/clusterkey"
	"github.com/dcounter/dcounter/internal/discovery"
	"github.com/spf13/cobra"
)

const discoveryHelp = `
Runs a discovery server: nodes started with --discovery URL register with it,
heartbeat every second, and read the list of live nodes from it to find
peers. Entries expire --ttl after their last heartbeat. The server is a
convenience: a running cluster keeps gossiping and converging without it,
and a restarted server relearns every live node within two heartbeats.

Routes: POST /register, POST /heartbeat (body {"id","name","gossip_addr",
"http_addr"}), GET /peers, POST /challenge, GET /health, GET /metrics.

With --cluster-key (the nodes' key), register, heartbeat and peers requests
must be signed with it over a fresh single-use challenge: anything else is
refused with 401 and changes nothing, and a recorded request cannot be sent
again. Without a key the server refuses to listen on an address other
machines can reach, unless --insecure is given.

The registry holds at most --max-entries entries, and at most
--max-per-source registered from one IP address.
`

func discoveryCommand() *cobra.Command {
	c := newCommand("discovery [flags]", "run a discovery server that nodes register with to find peers", discoveryHelp)
	fs := c.Flags()
	var (
		addr string
		cfg  discovery.Config
	)
	fs.StringVar(&addr, "http-addr", discovery.DefaultAddr, "`host:port` to serve on")
	fs.DurationVar(&cfg.TTL, "ttl", discovery.DefaultTTL, "how long an entry lives without a heartbeat")
	fs.StringVar(&cfg.DataFile, "data-file", "", "`file` keeping the registry across restarts (optional)")
	var kf keyFlags
	kf.register(fs, "sign (nodes and gateways sign with their first key)")
	var insecure bool
	fs.BoolVar(&insecure, "insecure", false, "allow serving without --cluster-key on an address other machines can reach (anyone who can reach it can then register addresses that gateways and nodes will contact)")
	fs.IntVar(&cfg.MaxEntries, "max-entries", discovery.DefaultMaxEntries, "most entries the registry holds")
	fs.IntVar(&cfg.MaxPerSource, "max-per-source", discovery.DefaultMaxPerSource, "most entries registered from one client IP address")
	var af apiFlags
	af.register(fs, false)
	var sf serverFlags
	sf.register(c)
	return finish(c, envServer, func(ctx context.Context, pos []string, stdout, stderr io.Writer) int {
		logger, stopDebug, code, ok := sf.start("discovery", pos, stderr)
		if !ok {
			return code
		}
		defer stopDebug()
		cfg.Logger = logger
		var err error
		if cfg.Keyring, err = kf.keyring(); err != nil {
			fmt.Fprintf(stderr, "dcounter discovery: %v\n", err)
			return exitUsage
		}
		if cfg.Keyring.Empty() && !insecure && !loopback(addr) {
			fmt.Fprintf(stderr, "dcounter discovery: --http-addr %s can be reached from other machines, but registrations are\n"+
				"unauthenticated without a cluster key: anyone who can reach the port could list addresses that nodes and\n"+
				"gateways will contact. Set --cluster-key (or DCOUNTER_CLUSTER_KEY; the nodes' key), or pass --insecure on\n"+
				"a network you trust.\n", addr)
			return exitUsage
		}
		srv, err := discovery.New(cfg)
		if err != nil {
			logger.Error("cannot start", "err", err)
			return 1
		}
		defer srv.Close()
		sec, err := af.build(clusterkey.Keyring{}, logger)
		if err != nil {
			fmt.Fprintf(stderr, "dcounter discovery: %v\n", err)
			return exitUsage
		}
		onHangup(ctx, func() { sec.reload(logger) })
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			logger.Error("cannot listen", "addr", addr, "err", err)
			return 1
		}
		if c := sec.serverTLS(); c != nil {
			ln = tls.NewListener(ln, c)
		}
		logger.Info("discovery server started", "http_addr", ln.Addr().String(), "ttl", cfg.TTL, "data_file", cfg.DataFile,
			"authenticated", !cfg.Keyring.Empty(), "key_ids", cfg.Keyring.IDs())
		if err := discovery.Serve(ctx, ln, srv); err != nil {
			logger.Error("server stopped", "err", err)
			return 1
		}
		logger.Info("discovery server stopped")
		return 0
	})
}
