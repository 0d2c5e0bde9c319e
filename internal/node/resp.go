package node

import (
	"errors"
	"fmt"
	"net"
	"runtime/debug"

	"github.com/dcounter/dcounter/internal/respserver"
	"github.com/dcounter/dcounter/internal/service"
)

// listenRESP binds the Redis-protocol listener, if configured, and serves
// it over the same service as the HTTP API. Caller starts nothing else on
// failure: the error is a startup error.
func (n *Node) listenRESP() error {
	if n.cfg.RESPAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", n.cfg.RESPAddr)
	if err != nil {
		return fmt.Errorf("node: Redis protocol listener: %w", err)
	}
	n.respLn = ln
	return nil
}

// serveRESP serves the Redis protocol on the listener listenRESP bound.
func (n *Node) serveRESP() {
	if n.respLn == nil {
		return
	}
	cfg := respserver.Config{
		Service: service.Instrument(n, n.metrics.ops, "resp"),
		TLS:     n.cfg.TLS,
		// Zero values are respserver's defaults.
		MaxClients:  n.cfg.RESPMaxClients,
		IdleTimeout: n.cfg.RESPIdleTimeout,
		Version:     Version(),
		Log:         n.log.With("component", "resp"),
	}
	if n.cfg.Tokens != nil {
		cfg.Auth = n.cfg.Tokens
	}
	n.resp = respserver.New(cfg)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.resp.Serve(n.respLn); err != nil && !errors.Is(err, respserver.ErrServerClosed) {
			n.log.Error("Redis protocol server stopped", "err", err)
		}
	}()
}

// RESPAddr returns the Redis-protocol listener's bound address, or "".
func (n *Node) RESPAddr() string {
	if n.respLn == nil {
		return ""
	}
	return n.respLn.Addr().String()
}

// Version is the running binary's version: its module version, or the VCS
// revision it was built from, or "dev".
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "dev"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}
