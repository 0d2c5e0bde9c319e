// Package gateway is dcounter's API gateway: one HTTP entry point that
// health-checks the nodes, spreads requests over the healthy ones, and fails
// over without ever turning one client write into two.
//
// A request is retried on another node only when it certainly did not reach
// the first: the connection could not be established, or the node answered
// 503 (it refuses writes before applying them). A failure after the request
// was sent (a reset mid-request, a timeout) is answered 502 and not retried —
// the write may have been applied. A client that gives up never causes a
// retry either.
//
// Writes are the routes that change counters (api.RouteKind.Writes):
// increments and decrements, deletes, and changes of expiry; they all follow
// the rules above and below. Reads (a counter, a page of the listing) go to
// any healthy node; a listing's cursor is a key, so its pages may come from
// different nodes.
//
// Writes carrying an Idempotency-Key header always go to the same node, the
// key's home (rendezvous hashing over the proven nodes), which remembers the
// key and replays its first answer to any retry. If the home node is down,
// such a write fails with 503 rather than risk being applied a second time
// elsewhere.
//
// # Proven members
//
// With a keyring (--cluster-key), a node gets client traffic — reads or
// writes — only while it proves, every health check, with the cluster key
// and a fresh challenge, that it is a member of this cluster at the very
// address the gateway uses (package memberproof). Whatever discovery or
// --nodes says, an address that cannot prove it gets nothing, and the id
// and name the gateway shows come from the proof. Only nodes that have
// proven themselves at least once are key homes, so an entry that never
// proved anything never blocks a keyed write. Without a keyring (for
// development on loopback) a node that answers its health check counts as
// proven: anything that can be listed by discovery or --nodes and answers
// 200 gets traffic.
//
// # Bounds
//
// At most MaxNodes nodes learned from discovery, or from the dns+ and
// dnssrv+ names in Nodes (which are listed like discovered nodes), are
// tracked; a node that discovery (or a name) stops listing stays in rotation for ListingGrace while it keeps
// passing its checks (a restarted discovery server lists nobody until the
// nodes' next heartbeats), then is kept as a key home for KeyHomeGrace, at
// most MaxUnlisted of them, and only if it was ever proven. /nodes reports coarse
// states (unreachable, not a proven member, unhealthy), never the raw error
// met at an address it was told about: those would make it a scanner of the
// gateway's network.
//
// # Client identity
//
// Client identity: when the gateway authenticated the client (api.Authorize
// with an auth file) and holds the cluster key, it passes the client's role
// and name to the node in signed Dcounter-Identity-* headers (package auth)
// and never the client's token; otherwise it passes the client's
// Authorization header on unchanged and the node checks the token itself.
// Client-supplied identity headers are never passed on. The gateway's own
// requests (health checks, the value of "default") carry a signed read
// identity named "gateway" when it holds the key.
package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dcounter/dcounter/internal/api"
	"github.com/dcounter/dcounter/internal/auth"
	"github.com/dcounter/dcounter/internal/clock"
	"github.com/dcounter/dcounter/internal/clusterkey"
	"github.com/dcounter/dcounter/internal/discoveryclient"
	"github.com/dcounter/dcounter/internal/joinaddr"
	"github.com/dcounter/dcounter/internal/memberproof"
	"github.com/dcounter/dcounter/internal/service"
)

// IdempotencyHeader names the header that makes a write retry-safe.
const IdempotencyHeader = api.IdempotencyHeader

// Config configures a Gateway. Zero fields take the defaults stated.
type Config struct {
	// Nodes lists the nodes' client API base URLs (http://host:port), or
	// names that resolve to them: dns+[scheme://]host:port (every A/AAAA
	// record of host, with port) or dnssrv+[scheme://]name (every target of
	// name's SRV records, with its port); scheme is http unless given.
	// Nodes from names are tracked like discovered ones (MaxNodes,
	// ListingGrace, KeyHomeGrace) and re-resolved every ResolveInterval.
	Nodes []string
	// ResolveInterval is how often the names in Nodes are re-resolved.
	// Default 30s.
	ResolveInterval time.Duration
	// Resolver looks up the names in Nodes. Default net.DefaultResolver.
	Resolver joinaddr.Resolver
	// Discovery lists discovery server URLs to read the nodes from, every
	// HealthInterval. Nodes and Discovery may be combined.
	Discovery []string
	// HealthInterval is how often every node is checked. Default 1s.
	HealthInterval time.Duration
	// HealthTimeout bounds one health check. Default 1s.
	HealthTimeout time.Duration
	// MaxTries bounds how many nodes one request is tried on. Default 3.
	MaxTries int
	// ProxyTimeout bounds one proxied request. Default 5s.
	ProxyTimeout time.Duration
	// ListingGrace is how long a node that discovery no longer lists
	// keeps getting traffic, as long as it passes its health checks (and
	// proofs): a discovery server that restarts without its --data-file
	// lists no node until each one's next heartbeat, and that must not
	// take healthy nodes out of rotation. A node that is really gone fails
	// its checks and gets nothing, grace or not. Default 5s (the nodes
	// heartbeat every second; the discovery server's default --ttl).
	ListingGrace time.Duration
	// KeyHomeGrace is how long a node that discovery no longer lists is
	// kept as the home of its idempotency keys. Default 1h (the nodes'
	// default --idempotency-window).
	KeyHomeGrace time.Duration
	// Keyring, if not empty, is the cluster key: nodes must prove
	// membership with it before they get any traffic, discovery requests
	// are signed with it, and so are the client identities passed on to
	// nodes (primary key). Empty: no proofs (development only).
	Keyring clusterkey.Keyring
	// Cluster is the cluster name nodes must prove. Default "dcounter".
	Cluster string
	// MaxNodes bounds the nodes tracked from discovery. Default 1024.
	MaxNodes int
	// MaxUnlisted bounds the nodes kept as key homes after discovery
	// stopped listing them (the longest unlisted go first). Default 64.
	MaxUnlisted int
	// Metrics, if set, records the gateway's metrics.
	Metrics *Metrics
	// Logger receives the gateway's logs. Default: discard.
	Logger *slog.Logger
	// Clock drives health checks. Default: the wall clock.
	Clock clock.Clock
	// TLS, if set, is the client configuration for https:// nodes and
	// discovery servers (the CA to verify them with, a client certificate).
	// With it, nodes that discovery lists without a scheme are reached over
	// https. Default: the system's roots.
	TLS *tls.Config
}

// defaultListingGrace is Config.ListingGrace's default.
const defaultListingGrace = 5 * time.Second

// ErrConfig is returned for an unusable configuration.
var ErrConfig = errors.New("gateway: invalid configuration")

// backend is one node as the gateway sees it.
type backend struct {
	url         string
	outstanding atomic.Int64

	// Guarded by Gateway.mu.
	id, name   string // from the last proof (without a key: the health check)
	healthy    bool   // proven and healthy at the last check: gets traffic
	everProven bool   // proven at least once: may be a key home
	proven     bool   // proven at the last check
	reason     string // why unhealthy: one of the coarse states
	value      *int64 // of "default", from the last check
	lastCheck  time.Time
	static     bool      // from Config.Nodes: never dropped
	unlisted   time.Time // when discovery stopped listing it (zero: listed)
	retired    bool      // unlisted for ListingGrace: no traffic, only its keyed writes
}

// Gateway is a running gateway. It is an http.Handler.
type Gateway struct {
	cfg    Config
	log    *slog.Logger
	clk    clock.Clock
	client *http.Client
	disc   *discoveryclient.Client

	// The DNS forms of Nodes; refresh goroutine only.
	dns         []*dnsNodes
	nextResolve time.Time
	resolveLog  joinaddr.LogLimiter
	discovered  []discoveryclient.Entry // discovery's last answer
	proofs      *memberproof.Verifier   // nil without a keyring

	mu       sync.Mutex
	backends map[string]*backend
	ring     []*backend // backends in URL order, for pick
	rr       uint64     // round-robin offset for ties

	// Unusable addresses are logged at most once a second: anyone who can
	// list addresses (without a key) could otherwise fill the log.
	lastUnusableLog time.Time
	unusable        int

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// New returns a running gateway; it checks every node once before returning.
func New(cfg Config) (*Gateway, error) {
	if len(cfg.Nodes) == 0 && len(cfg.Discovery) == 0 {
		return nil, fmt.Errorf("%w: give --nodes or --discovery", ErrConfig)
	}
	if cfg.HealthInterval <= 0 {
		cfg.HealthInterval = time.Second
	}
	if cfg.HealthTimeout <= 0 {
		cfg.HealthTimeout = time.Second
	}
	if cfg.MaxTries <= 0 {
		cfg.MaxTries = 3
	}
	if cfg.ProxyTimeout <= 0 {
		cfg.ProxyTimeout = 5 * time.Second
	}
	if cfg.ListingGrace <= 0 {
		cfg.ListingGrace = defaultListingGrace
	}
	if cfg.ResolveInterval <= 0 {
		cfg.ResolveInterval = 30 * time.Second
	}
	if cfg.KeyHomeGrace <= 0 {
		cfg.KeyHomeGrace = time.Hour
	}
	if cfg.Cluster == "" {
		cfg.Cluster = "dcounter"
	}
	if cfg.MaxNodes <= 0 {
		cfg.MaxNodes = 1024
	}
	if cfg.MaxUnlisted <= 0 {
		cfg.MaxUnlisted = 64
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	g := &Gateway{
		cfg: cfg, log: cfg.Logger, clk: cfg.Clock,
		client: &http.Client{Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:     cfg.TLS,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
		}},
		backends:   map[string]*backend{},
		resolveLog: joinaddr.LogLimiter{Every: joinaddr.DefaultLogEvery},
		stop:       make(chan struct{}), done: make(chan struct{}),
	}
	for _, u := range cfg.Nodes {
		if isDNSSpec(u) {
			d, err := parseDNSNodes(u)
			if err != nil {
				return nil, fmt.Errorf("%w: --nodes: %w", ErrConfig, err)
			}
			g.dns = append(g.dns, d)
			continue
		}
		u, err := normalize(u)
		if err != nil {
			return nil, fmt.Errorf("%w: --nodes: %v", ErrConfig, err)
		}
		g.backends[u] = &backend{url: u, static: true, reason: stateUnchecked}
	}
	g.rebuildRing()
	if len(cfg.Discovery) > 0 {
		g.disc = discoveryclient.New(discoveryclient.Config{URLs: cfg.Discovery,
			HTTP:    &http.Client{Timeout: cfg.HealthTimeout, Transport: &http.Transport{TLSClientConfig: cfg.TLS, Proxy: http.ProxyFromEnvironment}},
			Keyring: cfg.Keyring})
	}
	if !cfg.Keyring.Empty() {
		g.proofs = &memberproof.Verifier{Cluster: cfg.Cluster, Keyring: cfg.Keyring, HTTP: g.client}
	}
	g.refresh()
	go g.run()
	return g, nil
}

func normalize(u string) (string, error) {
	u = strings.TrimRight(strings.TrimSpace(u), "/")
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		return "", fmt.Errorf("%q: want http://host:port", u)
	}
	return u, nil
}

// Close stops health checking. It is idempotent.
func (g *Gateway) Close() error {
	g.once.Do(func() {
		close(g.stop)
		<-g.done
		g.client.CloseIdleConnections()
	})
	return nil
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
			g.log.Debug("unproven node no longer listed: forgotten", "url", u)
		case b.unlisted.IsZero():
			b.unlisted = now
			unlisted = append(unlisted, b)
			g.log.Info("node no longer listed by discovery; in rotation while it passes its checks for the listing grace",
				"url", u, "grace", g.cfg.ListingGrace)
		case now.Sub(b.unlisted) > g.cfg.KeyHomeGrace:
			delete(g.backends, u)
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
// health and its value of "default".
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
		err = g.getJSON(ctx, b.url+"/health", &h)
	}
	var value *int64
	if err == nil {
		var c api.CounterResponse
		if g.getJSON(ctx, b.url+"/counter", &c) == nil {
			value = &c.Value
		}
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
		b.reason, b.value = "", value
	} else {
		b.reason, b.value = stateOf(err), nil
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

func (g *Gateway) getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if !g.cfg.Keyring.Empty() {
		auth.SignForwarded(req, g.cfg.Keyring.Primary(), auth.Identity{Role: auth.RoleRead, Name: "gateway"}, nil)
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: %s answered %s", errUnhealthy, url, resp.Status)
	}
	if err := json.Unmarshal(body, v); err != nil {
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

// pick returns the healthy node with the fewest outstanding requests that
// is not in tried, or nil; ties go round-robin.
func (g *Gateway) pick(tried []*backend) *backend {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.rr++
	var best *backend
	var bestLoad int64
	n := len(g.ring)
	for i := 0; i < n; i++ {
		b := g.ring[(int(g.rr%uint64(n))+i)%n]
		if !b.healthy || b.retired || slices.Contains(tried, b) {
			continue
		}
		if load := b.outstanding.Load(); best == nil || load < bestLoad {
			best, bestLoad = b, load
		}
	}
	return best
}

// rebuildRing refreshes the stable order pick walks. Caller holds mu.
func (g *Gateway) rebuildRing() {
	g.ring = g.ring[:0]
	for _, b := range g.backends {
		g.ring = append(g.ring, b)
	}
	slices.SortFunc(g.ring, func(a, b *backend) int { return strings.Compare(a.url, b.url) })
}

// home returns the node an idempotency key belongs to: rendezvous hashing
// over every node that ever proved membership, healthy or not, so that a
// key does not move while its node is down. A node that never proved
// anything is no candidate: it cannot block the key's writes.
func (g *Gateway) home(key string) *backend {
	g.mu.Lock()
	defer g.mu.Unlock()
	var best *backend
	var bestScore uint64
	for _, b := range g.backends {
		if !b.everProven {
			continue
		}
		h := fnv.New64a()
		h.Write([]byte(b.url))
		h.Write([]byte{0})
		h.Write([]byte(key))
		if s := mix(h.Sum64()); best == nil || s > bestScore {
			best, bestScore = b, s
		}
	}
	return best
}

// mix is the splitmix64 finaliser: FNV alone barely spreads keys that
// differ only in their last bytes.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

func (g *Gateway) healthy(b *backend) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return b.healthy
}

// Errors the gateway answers with.
var errNoNode = service.Unavailable(errors.New("no healthy node"))

func errHomeDown(b *backend) error {
	return service.Unavailable(fmt.Errorf("node %s, which this Idempotency-Key belongs to, is down; retry later with the same key", b.url))
}

// ServeHTTP serves the client API by proxying to the nodes.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := g.clk.Now()
	rt, err := api.Match(w, r)
	if err != nil {
		api.WriteError(w, err)
		return
	}
	switch rt.Kind {
	case api.RouteNodes:
		api.WriteJSON(w, http.StatusOK, g.Nodes())
	case api.RouteHealth:
		ok, body := g.Health()
		status := http.StatusOK
		if !ok {
			status = http.StatusServiceUnavailable
		}
		api.WriteJSON(w, status, api.HealthFor(r.Context(), ok, body))
	case api.RouteMetrics:
		if g.cfg.Metrics == nil {
			api.WriteError(w, fmt.Errorf("%w: /metrics", api.ErrNotFound))
			return
		}
		g.cfg.Metrics.handler.ServeHTTP(w, r)
	default:
		outcome := g.proxy(w, r, rt)
		if m := g.cfg.Metrics; m != nil {
			m.observe(rt.Kind.Writes(), outcome, g.clk.Now().Sub(start))
		}
	}
}

// proxy forwards a counter request, failing over when that is safe, and
// returns an outcome label for metrics.
func (g *Gateway) proxy(w http.ResponseWriter, r *http.Request, rt api.Route) string {
	write := rt.Kind.Writes()
	var body []byte // nil for reads, never nil for writes (see forward)
	if write {
		var err error
		body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, api.MaxBody))
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				api.WriteError(w, api.ErrBodyTooLarge)
				return "bad_request"
			}
			api.WriteError(w, fmt.Errorf("%w: %v", api.ErrBadJSON, err))
			return "bad_request"
		}
		if body == nil {
			body = []byte{}
		}
	}
	idem, err := api.IdempotencyKey(r)
	if err != nil {
		api.WriteError(w, err)
		return "bad_request"
	}
	keyed := idem != "" && write
	var tried []*backend
	for attempt := 0; attempt < g.cfg.MaxTries; attempt++ {
		var b *backend
		if keyed {
			if attempt > 0 {
				break // never move a keyed write to another node
			}
			b = g.home(idem)
			if b == nil {
				break
			}
			if !g.healthy(b) {
				api.WriteError(w, errHomeDown(b))
				return "unavailable"
			}
		} else if b = g.pick(tried); b == nil {
			break
		}
		tried = append(tried, b)
		if attempt > 0 && g.cfg.Metrics != nil {
			g.cfg.Metrics.retries.Inc()
		}
		resp, err := g.forward(r, b, body)
		if err != nil {
			if r.Context().Err() != nil {
				return "client_gone" // the client gave up: no retry, nothing to answer
			}
			if notSent(err) {
				g.markDown(b, err)
				if keyed {
					api.WriteError(w, errHomeDown(b))
					return "unavailable"
				}
				continue // certainly not applied: safe to try another node
			}
			g.log.Warn("node failed after the request was sent", "url", b.url, "err", err)
			api.WriteJSON(w, http.StatusBadGateway, api.ErrorResponse{Error: fmt.Sprintf(
				"node %s failed after the request was sent: the change may or may not have been applied; retry with an Idempotency-Key to be safe", b.url)})
			return "unknown"
		}
		if resp.StatusCode == http.StatusServiceUnavailable && !keyed {
			resp.Body.Close()
			g.markDown(b, fmt.Errorf("answered 503"))
			continue // the node refused before applying anything
		}
		copyResponse(w, resp)
		if resp.StatusCode/100 == 2 {
			return "ok"
		}
		return "error"
	}
	api.WriteError(w, errNoNode)
	return "unavailable"
}

// forward sends r to b with body, bounded by ProxyTimeout and by the
// client's own context.
func (g *Gateway) forward(r *http.Request, b *backend, body []byte) (*http.Response, error) {
	b.outstanding.Add(1)
	defer b.outstanding.Add(-1)
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.ProxyTimeout)
	req, err := http.NewRequestWithContext(ctx, r.Method, b.url+r.URL.RequestURI(), nil)
	if err != nil {
		cancel()
		return nil, err
	}
	if body != nil {
		// A write (even a bodiless DELETE) is not replayable: net/http would
		// otherwise resend a keyed write on a fresh connection by itself
		// after a reused one failed, and a refusal of that resend would look
		// like "never sent".
		req.Body, req.GetBody, req.ContentLength = io.NopCloser(bytes.NewReader(body)), nil, int64(len(body))
	}
	for _, h := range []string{"Content-Type", IdempotencyHeader} {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	g.passIdentity(r, req, body)
	resp, err := g.client.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// passIdentity tells the node who the client is: a signed identity when
// this gateway authenticated the client and holds the cluster key, else the
// client's own Authorization header for the node to check.
func (g *Gateway) passIdentity(r, req *http.Request, body []byte) {
	id, ok := auth.FromContext(r.Context())
	if ok && id.Via != auth.ViaOpen && id.Role != auth.RoleNone && !g.cfg.Keyring.Empty() {
		auth.SignForwarded(req, g.cfg.Keyring.Primary(), id, body)
		return
	}
	if v := r.Header.Get("Authorization"); v != "" {
		req.Header.Set("Authorization", v)
	}
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// notSent reports whether err means the request never reached the node: the
// connection was refused or could not be made.
func notSent(err error) bool {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func copyResponse(w http.ResponseWriter, resp *http.Response) {
	defer resp.Body.Close()
	for _, h := range []string{"Content-Type", "Allow", api.ReplayedHeader} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, io.LimitReader(resp.Body, 1<<20))
}

// NodeStatus is one entry of the gateway's GET /nodes.
type NodeStatus struct {
	URL         string `json:"url"`
	ID          string `json:"id,omitempty"`
	Name        string `json:"name,omitempty"`
	Status      string `json:"status"`          // healthy, unhealthy, unproven (never proved membership), or unlisted (dropped by discovery for longer than the listing grace, kept as a key home)
	Error       string `json:"error,omitempty"` // coarse: unreachable, not a proven member, unhealthy, not checked yet
	Value       *int64 `json:"value"`           // of "default"; null when unknown
	Outstanding int64  `json:"outstanding"`
	LastCheck   string `json:"last_check,omitempty"`
}

// Nodes reports every known node's health and value of "default".
func (g *Gateway) Nodes() []NodeStatus {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]NodeStatus, 0, len(g.backends))
	for _, b := range g.backends {
		s := NodeStatus{URL: b.url, ID: b.id, Name: b.name, Status: "unhealthy", Error: b.reason,
			Value: b.value, Outstanding: b.outstanding.Load()}
		switch {
		case b.retired:
			s.Status = "unlisted" // kept only as the home of its idempotency keys
		case b.healthy:
			s.Status = "healthy"
		case !b.everProven:
			s.Status = "unproven"
		}
		if !b.lastCheck.IsZero() {
			s.LastCheck = b.lastCheck.UTC().Format(time.RFC3339Nano)
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b NodeStatus) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.URL, b.URL)
	})
	return out
}

// Health is the gateway's GET /health answer.
type Health struct {
	Status       string `json:"status"`
	HealthyNodes int    `json:"healthy_nodes"`
	Nodes        int    `json:"nodes"`
	Error        string `json:"error,omitempty"`
}

// Health reports whether at least one node is healthy.
func (g *Gateway) Health() (bool, Health) {
	g.mu.Lock()
	defer g.mu.Unlock()
	h := Health{Status: "ok"}
	for _, b := range g.backends {
		if b.retired {
			continue
		}
		h.Nodes++
		if b.healthy {
			h.HealthyNodes++
		}
	}
	if h.HealthyNodes == 0 {
		h.Status, h.Error = "unavailable", "no healthy node"
		return false, h
	}
	return true, h
}
