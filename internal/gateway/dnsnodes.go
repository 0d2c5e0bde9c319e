package gateway

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/dcounter/dcounter/internal/joinaddr"
)

// dnsNodes is one --nodes entry of the DNS forms: dns+[scheme://]host:port
// or dnssrv+[scheme://]name, each address it resolves to a node's client API
// at scheme://addr (scheme http unless given, as for a plain host:port).
type dnsNodes struct {
	target joinaddr.Target
	scheme string
	urls   []string // from the last successful resolution
}

// isDNSSpec reports whether a --nodes entry is of a DNS form.
func isDNSSpec(s string) bool {
	return strings.HasPrefix(s, joinaddr.PrefixDNS) || strings.HasPrefix(s, joinaddr.PrefixDNSSRV)
}

// parseDNSNodes parses dns+[scheme://]host:port or dnssrv+[scheme://]name.
func parseDNSNodes(spec string) (*dnsNodes, error) {
	prefix := joinaddr.PrefixDNS
	if strings.HasPrefix(spec, joinaddr.PrefixDNSSRV) {
		prefix = joinaddr.PrefixDNSSRV
	}
	rest := strings.TrimRight(spec[len(prefix):], "/")
	scheme := "http"
	if i := strings.Index(rest, "://"); i >= 0 {
		scheme, rest = rest[:i], rest[i+3:]
		if scheme != "http" && scheme != "https" {
			return nil, fmt.Errorf("%q: want %shttp://… or %shttps://…", spec, prefix, prefix)
		}
	}
	t, err := joinaddr.ParseOne(prefix + rest)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", spec, err)
	}
	t.Spec = spec
	return &dnsNodes{target: t, scheme: scheme}, nil
}

// resolveDNSNodes re-resolves every DNS entry if ResolveInterval has passed
// since the last time (sooner after a failure). A name that fails keeps the
// nodes it last resolved to; its failure is logged at most once a minute.
func (g *Gateway) resolveDNSNodes() {
	now := g.clk.Now()
	if len(g.dns) == 0 || now.Before(g.nextResolve) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.HealthTimeout+4*time.Second)
	defer cancel()
	failed := false
	for _, d := range g.dns {
		addrs, err := joinaddr.Resolve(ctx, g.cfg.Resolver, []joinaddr.Target{d.target})
		if err != nil {
			failed = true
			if g.resolveLog.Allow(d.target.Spec, now) {
				g.log.Warn("--nodes name does not resolve; keeping the nodes it last gave", "spec", d.target.Spec, "err", err, "nodes", len(d.urls))
			}
			continue
		}
		g.resolveLog.Forget(d.target.Spec)
		urls := make([]string, 0, len(addrs))
		for _, a := range addrs {
			if u, err := normalize(d.scheme + "://" + a); err == nil {
				urls = append(urls, u)
			}
		}
		d.urls = urls
	}
	g.nextResolve = now.Add(g.cfg.ResolveInterval)
	if failed {
		g.nextResolve = now.Add(min(g.cfg.ResolveInterval, dnsRetry))
	}
}

// dnsRetry is how soon a name that failed to resolve is tried again.
const dnsRetry = 5 * time.Second

// dnsListed returns the URLs the DNS entries last resolved to.
func (g *Gateway) dnsListed() []string {
	var out []string
	for _, d := range g.dns {
		out = append(out, d.urls...)
	}
	return out
}

var _ joinaddr.Resolver = (*net.Resolver)(nil)
