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
// the rules above and below.
//
// # Routing: read-your-writes
//
// Every request that names a counter (its reads and writes, keyed or not,
// "default" included) goes to the counter's home: the first node in the
// counter's rendezvous order (hashing over the nodes that ever proved
// membership) that is healthy and in rotation. While the home stays healthy,
// every read of a counter goes where its writes went, so a client reads its
// own writes through the gateway. When the home is out of rotation the next
// node in the order takes over for every request of the counter; a read
// there can be stale until gossip has brought it the writes the home took
// (see the README's "read-your-writes" section for every such case). A read
// with ?min=N (minread.go) is answered only by a node at N or above, else
// 503. Listings have no key: they go to the least busy healthy node, and a
// listing's cursor is a key, so its pages may come from different nodes.
//
// Writes carrying an Idempotency-Key header go only to the counter's home,
// healthy or not, which remembers the key and replays its first answer to
// any retry (every retry names the same counter). If the home is down, such
// a write fails with 503 rather than risk being applied a second time
// elsewhere. Unkeyed writes follow the counter's order, and move to the
// next node only under the retry rules above.
//
// Files: gateway.go (config, handler, /nodes, /health), pool.go (nodes,
// health checks, proofs, discovery), dnsnodes.go (dns+ and dnssrv+ names),
// routing.go (homes and rendezvous order), proxy.go (forwarding, retries,
// identity), nodeconn.go (the HTTP/1.1 client and connection pool for
// plain-http nodes), minread.go (?min reads), metrics.go.
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
// requests (health checks, the value of "default" that /nodes shows) carry a
// signed read identity named "gateway" when it holds the key.
package gateway

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dcounter/dcounter/internal/api"
	"github.com/dcounter/dcounter/internal/clock"
	"github.com/dcounter/dcounter/internal/clusterkey"
	"github.com/dcounter/dcounter/internal/discoveryclient"
	"github.com/dcounter/dcounter/internal/joinaddr"
	"github.com/dcounter/dcounter/internal/memberproof"
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
	// MinReadWait bounds how long a read with ?min=N waits for a node to
	// reach N. Default 1s.
	MinReadWait time.Duration
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
	// Auth, if set, authenticates and authorises every client request Run
	// serves (api.Authorize); nil leaves the API open.
	Auth api.Authenticator
	// ServerTLS, if set, makes Run serve clients over TLS.
	ServerTLS *tls.Config
	// ShutdownTimeout bounds how long Run lets requests in flight finish
	// once its context ends. Default DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
}

// defaultListingGrace is Config.ListingGrace's default.
const defaultListingGrace = 5 * time.Second

// ErrConfig is returned for an unusable configuration.
var ErrConfig = errors.New("gateway: invalid configuration")

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

// Defaults of Config's fields: a zero field takes its default; a negative
// one is refused. The flags of 'dcounter gateway' default to the same values.
const (
	DefaultHealthInterval  = time.Second
	DefaultHealthTimeout   = time.Second
	DefaultMaxTries        = 3
	DefaultProxyTimeout    = 5 * time.Second
	DefaultMinReadWait     = time.Second
	DefaultResolveInterval = 30 * time.Second
	DefaultKeyHomeGrace    = time.Hour
	DefaultCluster         = "dcounter"
	DefaultMaxNodes        = 1024
	DefaultMaxUnlisted     = 64
	DefaultShutdownTimeout = 10 * time.Second
)

// New returns a running gateway; it checks every node once before returning.
func New(cfg Config) (*Gateway, error) {
	if len(cfg.Nodes) == 0 && len(cfg.Discovery) == 0 {
		return nil, fmt.Errorf("%w: give --nodes or --discovery", ErrConfig)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"health-interval", cfg.HealthInterval}, {"health-timeout", cfg.HealthTimeout},
		{"proxy-timeout", cfg.ProxyTimeout}, {"min-read-wait", cfg.MinReadWait},
		{"listing grace", cfg.ListingGrace}, {"resolve-interval", cfg.ResolveInterval},
		{"key-home grace", cfg.KeyHomeGrace}, {"shutdown timeout", cfg.ShutdownTimeout},
	} {
		if d.v < 0 {
			return nil, fmt.Errorf("%w: %s must not be negative (got %v; 0 means the default)", ErrConfig, d.name, d.v)
		}
	}
	if cfg.MaxTries < 0 || cfg.MaxNodes < 0 || cfg.MaxUnlisted < 0 {
		return nil, fmt.Errorf("%w: max-tries, max-nodes and the unlisted-home limit must not be negative", ErrConfig)
	}
	cfg.HealthInterval = cmp.Or(cfg.HealthInterval, DefaultHealthInterval)
	cfg.HealthTimeout = cmp.Or(cfg.HealthTimeout, DefaultHealthTimeout)
	cfg.MaxTries = cmp.Or(cfg.MaxTries, DefaultMaxTries)
	cfg.ProxyTimeout = cmp.Or(cfg.ProxyTimeout, DefaultProxyTimeout)
	cfg.MinReadWait = cmp.Or(cfg.MinReadWait, DefaultMinReadWait)
	cfg.ListingGrace = cmp.Or(cfg.ListingGrace, defaultListingGrace)
	cfg.ResolveInterval = cmp.Or(cfg.ResolveInterval, DefaultResolveInterval)
	cfg.KeyHomeGrace = cmp.Or(cfg.KeyHomeGrace, DefaultKeyHomeGrace)
	cfg.Cluster = cmp.Or(cfg.Cluster, DefaultCluster)
	cfg.MaxNodes = cmp.Or(cfg.MaxNodes, DefaultMaxNodes)
	cfg.MaxUnlisted = cmp.Or(cfg.MaxUnlisted, DefaultMaxUnlisted)
	cfg.ShutdownTimeout = cmp.Or(cfg.ShutdownTimeout, DefaultShutdownTimeout)
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
		g.mu.Lock()
		for _, b := range g.backends {
			b.conns.close()
		}
		g.mu.Unlock()
		g.client.CloseIdleConnections()
	})
	return nil
}

// closeIdleConns drops every idle connection to the nodes.
func (g *Gateway) closeIdleConns() {
	g.mu.Lock()
	for _, b := range g.backends {
		b.conns.closeIdle(time.Time{})
	}
	g.mu.Unlock()
	g.client.CloseIdleConnections()
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
		api.WriteJSON(w, http.StatusOK, g.NodesContext(r.Context()))
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

// Nodes reports every known node's health and, for the healthy ones, its
// value of "default", read from each node now (in parallel, each bounded by
// HealthTimeout). The value is read only here, when someone asks: the node
// counts the read as a client read of "default", which is what it is.
func (g *Gateway) Nodes() []NodeStatus {
	return g.NodesContext(context.Background())
}

// NodesContext is Nodes bounded by ctx.
func (g *Gateway) NodesContext(ctx context.Context) []NodeStatus {
	out := g.states()
	ctx, cancel := context.WithTimeout(ctx, g.cfg.HealthTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for i := range out {
		if out[i].Status != "healthy" {
			continue
		}
		wg.Add(1)
		go func(s *NodeStatus) {
			defer wg.Done()
			var c api.CounterResponse
			if g.getJSON(ctx, s.URL, "/counter", &c) == nil {
				s.Value = &c.Value
			}
		}(&out[i])
	}
	wg.Wait()
	return out
}

// states is Nodes without the values: what the gateway knows without
// asking any node.
func (g *Gateway) states() []NodeStatus {
	g.mu.Lock()
	out := make([]NodeStatus, 0, len(g.backends))
	for _, b := range g.backends {
		s := NodeStatus{URL: b.url, ID: b.id, Name: b.name, Status: "unhealthy", Error: b.reason,
			Outstanding: b.outstanding.Load()}
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
	g.mu.Unlock()
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
