package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dcounter/dcounter/internal/auth"
	"github.com/dcounter/dcounter/internal/discoveryclient"
	"github.com/dcounter/dcounter/internal/memberproof"
)

// backend is one node as the gateway sees it.
type backend struct {
	url         string
	outstanding atomic.Int64
	conns       nodeConns // to a plain-http node

	// Guarded by Gateway.mu.
	id, name   string // from the last proof (without a key: the health check)
	healthy    bool   // proven and healthy at the last check: gets traffic
	everProven bool   // proven at least once: may be a key home
	proven     bool   // proven at the last check
	reason     string // why unhealthy: one of the coarse states
	lastCheck  time.Time
	static     bool      // from Config.Nodes: never dropped
	unlisted   time.Time // when discovery stopped listing it (zero: listed)
	retired    bool      // unlisted for ListingGrace: no traffic, only its keyed writes
}

func (g *Gateway) run() {
	defer close(g.done)
	t := g.clk.NewTicker(g.cfg.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C():
			g.refresh()
		}
	}
}

// refresh reads the node list from discovery (if any), re-resolves the
// names in Nodes when due, and checks every node.
func (g *Gateway) refresh() {
	listed := false
	if g.disc != nil {
		ctx, cancel := context.WithTimeout(context.Background(), g.cfg.HealthTimeout)
		peers, err := g.disc.Peers(ctx)
		cancel()
		if err != nil {
			g.log.Warn("discovery unreachable; keeping the known nodes", "err", err)
		} else {
			g.discovered, listed = peers, true
		}
	}
	g.resolveDNSNodes()
	if listed || len(g.dns) > 0 {
		// Discovery's last answer and the names' last resolutions together
		// are the listed nodes: a source that failed this round keeps what
		// it listed before.
		g.setDiscovered(g.discovered, g.dnsListed())
	}
	g.mu.Lock()
	bs := make([]*backend, 0, len(g.backends))
	for _, b := range g.backends {
		bs = append(bs, b)
	}
	g.mu.Unlock()
	var wg sync.WaitGroup
	for _, b := range bs {
		b.conns.closeStale()
		wg.Add(1)
		go func() { defer wg.Done(); g.check(b) }()
	}
	wg.Wait()
	if g.cfg.Metrics != nil {
		g.mu.Lock()
		healthy := 0
		for _, b := range g.backends {
			if b.healthy {
				healthy++
			}
		}
		g.cfg.Metrics.nodes.WithLabelValues("healthy").Set(float64(healthy))
		g.cfg.Metrics.nodes.WithLabelValues("unhealthy").Set(float64(len(g.backends) - healthy))
		g.mu.Unlock()
	}
}

// setDiscovered makes peers (from discovery) and resolved (URLs from the
// names in Nodes) the listed nodes.
func (g *Gateway) setDiscovered(peers []discoveryclient.Entry, resolved []string) {
	live := map[string]bool{}
	for _, u := range resolved {
		live[u] = true
	}
	for _, p := range peers {
		if p.HTTPAddr == "" {
			continue
		}
		addr := p.HTTPAddr
		if g.cfg.TLS != nil && !strings.Contains(addr, "://") {
			addr = "https://" + addr
		}
		u, err := normalize(addr)
		if err != nil {
			continue
		}
		live[u] = true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.clk.Now()
	tracked := 0
	for _, b := range g.backends {
		if !b.static {
			tracked++
		}
	}
	ignored := 0
	for u := range live {
		switch b := g.backends[u]; {
		case b != nil:
			if b.retired {
				g.log.Info("node listed by discovery again", "url", u)
			}
			b.unlisted, b.retired = time.Time{}, false
		case tracked >= g.cfg.MaxNodes:
			ignored++
		default:
			tracked++
			g.backends[u] = &backend{url: u, reason: stateUnchecked}
			g.log.Info("node discovered", "url", u)
		}
	}
	if ignored > 0 {
		g.log.Warn("discovery lists more nodes than --max-nodes; ignoring the rest", "ignored", ignored, "max_nodes", g.cfg.MaxNodes)
	}
	// A node that discovery stops listing stays in rotation for
	// ListingGrace while it passes its checks: an empty or partial list may
	// only mean the discovery server restarted and has not heard every
	// heartbeat yet. After that it gets no traffic, but stays known for
	// KeyHomeGrace if it ever proved membership: it remains the home of its
	// idempotency keys (which must not move to a node that has not seen
	// them), and gets its keyed writes only while healthy. One that never
	// proved anything is no home and is forgotten at once.
	var unlisted []*backend
	for u, b := range g.backends {
		switch {
		case b.static || live[u]:
		case !b.everProven:
			delete(g.backends, u)
			b.conns.close()
			g.log.Debug("unproven node no longer listed: forgotten", "url", u)
		case b.unlisted.IsZero():
			b.unlisted = now
			unlisted = append(unlisted, b)
			g.log.Info("node no longer listed by discovery; in rotation while it passes its checks for the listing grace",
				"url", u, "grace", g.cfg.ListingGrace)
		case now.Sub(b.unlisted) > g.cfg.KeyHomeGrace:
			delete(g.backends, u)
			b.conns.close()
			g.log.Info("node forgotten", "url", u, "unlisted_for", now.Sub(b.unlisted).Round(time.Second))
		default:
			unlisted = append(unlisted, b)
		}
	}
	for _, b := range unlisted {
		if !b.retired && now.Sub(b.unlisted) >= g.cfg.ListingGrace {
			b.retired = true
			g.log.Info("node out of rotation: no longer listed by discovery", "url", b.url, "unlisted_for", now.Sub(b.unlisted).Round(time.Millisecond))
		}
	}
	if len(unlisted) > g.cfg.MaxUnlisted {
		slices.SortFunc(unlisted, func(a, b *backend) int { return a.unlisted.Compare(b.unlisted) })
		for _, b := range unlisted[:len(unlisted)-g.cfg.MaxUnlisted] {
			delete(g.backends, b.url)
			b.conns.close()
			g.log.Info("node forgotten: too many unlisted nodes", "url", b.url, "max_unlisted", g.cfg.MaxUnlisted)
		}
	}
	g.rebuildRing()
}

// Coarse states /nodes reports for a node that gets no traffic. The error
// behind each is logged, never shown: the addresses came from discovery or
// --nodes, and their raw errors would map the gateway's network.
const (
	stateUnchecked   = "not checked yet"
	stateUnreachable = "unreachable"
	stateNotMember   = "not a proven member"
	stateUnhealthy   = "unhealthy"
)

// errUnhealthy marks an answer that came back but was not a healthy one.
var errUnhealthy = errors.New("gateway: unhealthy answer")

// stateOf maps a check's error to its coarse state.
func stateOf(err error) string {
	switch {
	case errors.Is(err, memberproof.ErrNotMember):
		return stateNotMember
	case errors.Is(err, errUnhealthy):
		return stateUnhealthy
	}
	return stateUnreachable
}

// check proves one node's membership (with a keyring), then asks for its
// health. It reads no counter: a node counts every counter read as a
// client operation (dcounter_operations_total), and checks are not clients.
func (g *Gateway) check(b *backend) {
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.HealthTimeout)
	defer cancel()
	var (
		m   memberproof.Member
		err error
	)
	if g.proofs != nil {
		m, err = g.proofs.Prove(ctx, b.url)
	}
	proven := err == nil
	var h struct {
		Status, ID, Name string
	}
	if err == nil {
		err = g.getJSON(ctx, b.url, "/health", &h)
	}
	if g.proofs == nil {
		// Development mode: answering the health check is all the proof
		// there is, and the node names itself.
		proven, m.ID, m.Name = err == nil, h.ID, h.Name
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	was := b.healthy
	b.lastCheck = g.clk.Now()
	b.healthy, b.proven = err == nil, proven
	if proven {
		if !b.everProven || b.id != m.ID {
			g.log.Info("node proved membership", "url", b.url, "id", m.ID, "name", m.Name)
		}
		b.everProven, b.id, b.name = true, m.ID, m.Name
	}
	if err == nil {
		b.reason = ""
	} else {
		b.reason = stateOf(err)
	}
	switch {
	case was && !b.healthy:
		g.log.Warn("node out of rotation", "url", b.url, "name", b.name, "state", b.reason, "err", err)
	case !was && b.healthy:
		g.log.Info("node healthy", "url", b.url, "name", b.name)
	case !b.healthy && !b.everProven:
		g.unusable++
		if now := g.clk.Now(); g.lastUnusableLog.IsZero() || now.Sub(g.lastUnusableLog) >= time.Second {
			g.log.Warn("addresses not usable (logged at most once a second)", "count", g.unusable,
				"last_url", b.url, "last_state", b.reason, "last_err", err)
			g.lastUnusableLog, g.unusable = now, 0
		}
	}
}

// getJSON reads base+path from the node at base as the gateway itself. A
// known plain-http node is asked over the connections proxied requests use,
// which also keeps some of them open for those.
func (g *Gateway) getJSON(ctx context.Context, base, path string, v any) error {
	url := base + path
	var hdr []nodeHeader
	if !g.cfg.Keyring.Empty() {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		auth.SignForwarded(req, g.cfg.Keyring.Primary(), auth.Identity{Role: auth.RoleRead, Name: "gateway"}, nil)
		for _, name := range []string{auth.HeaderRole, auth.HeaderName, auth.HeaderKey, auth.HeaderMAC} {
			hdr = append(hdr, nodeHeader{name, req.Header.Get(name)})
		}
	}
	g.mu.Lock()
	b := g.backends[base]
	g.mu.Unlock()
	var (
		resp nodeResponse
		err  error
	)
	if b != nil && strings.HasPrefix(base, "http://") {
		resp, err = b.conns.do(ctx, base, http.MethodGet, path, hdr, nil, time.Time{})
	} else {
		resp, err = g.forwardTLS(ctx, http.MethodGet, url, hdr, nil)
	}
	if err != nil {
		return err
	}
	if resp.status != http.StatusOK {
		return fmt.Errorf("%w: %s answered %d %s", errUnhealthy, url, resp.status, http.StatusText(resp.status))
	}
	if err := json.Unmarshal(resp.body, v); err != nil {
		return fmt.Errorf("%w: %s: %v", errUnhealthy, url, err)
	}
	return nil
}

// markDown takes a node out of rotation until its next good health check.
func (g *Gateway) markDown(b *backend, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if b.healthy {
		g.log.Warn("node unreachable; out of rotation until it passes a health check", "url", b.url, "err", err)
	}
	b.healthy, b.reason = false, stateOf(err)
}

func (g *Gateway) healthy(b *backend) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return b.healthy
}
