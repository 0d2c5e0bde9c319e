// Package node runs one dcounter replica: it wires the keyspace, the gossip
// engine, the member protocol engine and the transport together, owns every
// goroutine, timer and socket, and serves the client API.
//
// # Write path
//
// A client write computes the replica's new absolute totals under the lock,
// reserves them in pending (so concurrent writers build on each other), makes
// them durable, and only then merges them into the keyspace, queues them for
// gossip and acknowledges. Because everything in the keyspace may be gossiped,
// no peer ever learns a total of ours that we could forget in a crash.
package node

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/dcounter/dcounter/internal/api"
	"github.com/dcounter/dcounter/internal/clock"
	"github.com/dcounter/dcounter/internal/clusterkey"
	"github.com/dcounter/dcounter/internal/crdt"
	"github.com/dcounter/dcounter/internal/datadir"
	"github.com/dcounter/dcounter/internal/discoveryclient"
	"github.com/dcounter/dcounter/internal/gossip"
	"github.com/dcounter/dcounter/internal/httpserve"
	"github.com/dcounter/dcounter/internal/joinaddr"
	"github.com/dcounter/dcounter/internal/memberproof"
	"github.com/dcounter/dcounter/internal/membership"
	"github.com/dcounter/dcounter/internal/respserver"
	"github.com/dcounter/dcounter/internal/service"
	"github.com/dcounter/dcounter/internal/transport"
	"github.com/dcounter/dcounter/internal/ui"
	"github.com/dcounter/dcounter/internal/wal"
	"github.com/dcounter/dcounter/internal/wire"
)

// Endpoint is what the node needs from a transport.
type Endpoint interface {
	Addr() string
	Send(to string, payload []byte) error
	// Flush waits until what was sent so far is written or dropped.
	Flush(ctx context.Context) error
	Close() error
}

var (
	_ Endpoint = (*transport.TCP)(nil)
	_ Endpoint = (*transport.MemEndpoint)(nil)
)

// Errors returned by New.
var (
	ErrJoin = errors.New("node: could not join the cluster")
	// ErrReplicaConflict means this node's replica ID is also used elsewhere.
	ErrReplicaConflict = errors.New("node: replica ID conflict")
	ErrDiscovery       = errors.New("node: cannot reach the discovery server")
	ErrConfig          = errors.New("node: invalid configuration")
)

// Config configures a node. Zero fields take the defaults stated.
type Config struct {
	// Name is the human-readable member name. Default: the host name.
	Name string
	// GossipAddr is the TCP address to listen on for peers. Default 127.0.0.1:7946.
	GossipAddr string
	// AdvertiseAddr is the address peers dial. Default: the bound GossipAddr.
	AdvertiseAddr string
	// HTTPAddr is the client API's listen address; empty means no HTTP server.
	HTTPAddr string
	// AdvertiseHTTPAddr is the client API address given to peers, discovery
	// and gateways. Default: the bound HTTP address, or, when that is a
	// wildcard (0.0.0.0), the advertised gossip host with the HTTP port.
	AdvertiseHTTPAddr string
	// Join lists members to join through; empty starts a new cluster.
	// Each is host:port, dns+host:port (every A/AAAA record of host) or
	// dnssrv+name (every target of name's SRV records), see package
	// joinaddr; names are re-resolved every JoinInterval.
	Join []string
	// JoinInterval is how often the names in Join are re-resolved, and
	// any address they give that is not a live member joined. Default 30s.
	JoinInterval time.Duration
	// Resolver looks up the names in Join. Default net.DefaultResolver
	// (which reads /etc/resolv.conf).
	Resolver joinaddr.Resolver
	// Bootstrap starts a new cluster when no Join target answers, instead of failing.
	Bootstrap bool
	// JoinTimeout bounds how long joining may take. Default 5s.
	JoinTimeout time.Duration
	// Discovery lists discovery server URLs to register with and find
	// peers through, at start and continuously.
	Discovery []string
	// DiscoveryInterval is the discovery heartbeat period. Default 1s.
	DiscoveryInterval time.Duration
	// SuspectAfter and DeadAfter tune failure detection (see package
	// membership). Defaults 1.5s and 3s.
	SuspectAfter, DeadAfter time.Duration
	// Cluster is the cluster name, carried in every frame. Default "dcounter".
	Cluster string
	// ClusterKeys authenticates and encrypts gossip (see package
	// transport); the first key connects, all are accepted. Default empty:
	// plaintext gossip.
	ClusterKeys clusterkey.Keyring
	// DataDir holds the replica identity and the write-ahead log. Empty:
	// state in memory only, and a new replica ID on every start.
	DataDir string
	// Fsync is the write-ahead log's fsync policy. Default wal.SyncAlways.
	Fsync wal.SyncPolicy
	// FsyncInterval is the fsync period under wal.SyncInterval. Default 1s.
	FsyncInterval time.Duration
	// SegmentSize is the log segment size. Default 64 MiB.
	SegmentSize int64
	// SnapshotInterval is how often a snapshot is written if anything was
	// logged since the last. Default 5m.
	SnapshotInterval time.Duration
	// DiscardCorrupt lets recovery skip corrupt log data (and take a new
	// replica ID) instead of refusing to start.
	DiscardCorrupt bool
	// NewReplica makes the node take a new replica ID at start, as it must
	// after its data dir was restored from a backup or copied.
	NewReplica bool
	// IdempotencyWindow is how long an Idempotency-Key is remembered.
	// Default 1h.
	IdempotencyWindow time.Duration
	// MaxIdempotencyKeys bounds the keys remembered at once; keyed writes
	// beyond it are refused (503). Default 1,000,000.
	MaxIdempotencyKeys int
	// SyncInterval is the anti-entropy and member-gossip period. Default 500ms.
	SyncInterval time.Duration
	// DeltaInterval is how long changes are batched before being pushed
	// when the node has pushed nothing for a delta gap. Default 5ms.
	DeltaInterval time.Duration
	// DeltaGap is the least time between two pushes: under a steady
	// stream of changes (local writes, news from peers to pass on) a node
	// pushes at most once per DeltaGap, so each push carries more and
	// every peer handles fewer messages. Default (0): DeltaInterval × the
	// number of peers ÷ 2, at most MaxAutoDeltaGap (10ms with 4 peers,
	// 47.5ms with 19), because every write in the cluster is news to
	// every node: the more nodes, the more news each pushes, and the
	// longer a batch must gather to keep the messages per write in check.
	// At most MaxDeltaGap.
	DeltaGap time.Duration
	// Fanout is the number of peers each delta goes to. Default 3.
	Fanout int
	// MaxClockSkew is the clock difference with a member beyond which a
	// warning is logged (at most once a minute per member). Default 10s:
	// far above network delay and NTP's error, far below anything a
	// person would call "the right time". Clock offsets are measured and
	// exported whatever this is; nothing but the log depends on it.
	MaxClockSkew time.Duration
	// ExpiryGrace is how long after its deadline an expired generation's
	// entries are kept before it is turned into a tombstone (crdt.Reclaim):
	// replicas whose clocks run behind by less than this still agree on
	// what the key read before the deadline. Default 2×MaxClockSkew.
	ExpiryGrace time.Duration
	// ReclaimHorizon is how long a tombstone (a deleted or expired key) is
	// kept before it is forgotten. It must exceed the longest time a
	// replica may be cut off and come back: one that held an older
	// generation of a forgotten key brings that generation back. Default 24h.
	ReclaimHorizon time.Duration
	// MemberHorizon is how long a member that died or left stays in the
	// member list before it is pruned, with everything kept about it
	// (see membership.List.Prune); its counts stay. Like ReclaimHorizon it
	// must exceed the longest time a member may be cut off and still be
	// found again without rejoining. Default ReclaimHorizon (at least
	// 2×DeadAfter).
	MemberHorizon time.Duration
	// ReclaimInterval is how often reclaim runs. Default 1s.
	ReclaimInterval time.Duration
	// Logger receives the node's logs. Default: discard.
	Logger *slog.Logger
	// Clock drives timers. Default: the wall clock.
	Clock clock.Clock
	// Auth, if set, authenticates and authorises every client API request
	// (api.Authorize). Nil: the API is open to whoever can reach it.
	Auth api.Authenticator
	// RESPAddr is the Redis-protocol listener's address; empty means none.
	RESPAddr string
	// RESPMaxClients bounds the Redis-protocol connections served at once
	// (default respserver.DefaultMaxClients); RESPIdleTimeout closes one
	// idle that long (default 0: never).
	RESPMaxClients  int
	RESPIdleTimeout time.Duration
	// Tokens, if set, are what AUTH checks on the Redis-protocol listener
	// (the tokens of Auth's auth file). Nil: no AUTH needed there.
	Tokens respserver.TokenLookup
	// TLS, if set, serves the client API over TLS with this configuration
	// (tlsfiles.Server.TLSConfig). Nil: plain HTTP.
	TLS *tls.Config
	// DiscoveryTLS, if set, verifies https:// discovery servers (a private
	// CA). Default: the system's roots.
	DiscoveryTLS *tls.Config
	// ShutdownDrain bounds the drain Shutdown begins with: the client API
	// keeps listening but answers every request 503 with "Connection:
	// close" (drain.go), until no request has come for 100ms or this much
	// time has passed. Gateways then move their traffic elsewhere without
	// a write cut short on a kept-alive connection. The Redis-protocol
	// listener drains alongside, answering every command TRYAGAIN
	// (respserver.Drain). Default 1s; negative: no drain.
	ShutdownDrain time.Duration
	// Transport, if set, builds the endpoint instead of a TCP listener on
	// GossipAddr (tests use transport.MemNetwork).
	Transport func(transport.Handler) (Endpoint, error)
}

// Defaults of Config's fields: a zero field takes its default. The flags
// of 'dcounter node' default to the same values.
const (
	DefaultGossipAddr         = "127.0.0.1:7946"
	DefaultCluster            = "dcounter"
	DefaultJoinInterval       = 30 * time.Second
	DefaultJoinTimeout        = 5 * time.Second
	DefaultSyncInterval       = 500 * time.Millisecond
	DefaultDeltaInterval      = 5 * time.Millisecond
	MaxAutoDeltaGap           = 100 * time.Millisecond
	MaxDeltaGap               = time.Second
	DefaultFanout             = 3
	DefaultIdempotencyWindow  = time.Hour
	DefaultMaxIdempotencyKeys = 1_000_000
	DefaultDiscoveryInterval  = time.Second
	DefaultSuspectAfter       = 1500 * time.Millisecond
	DefaultDeadAfter          = 3 * time.Second
	DefaultMaxClockSkew       = 10 * time.Second
	DefaultReclaimHorizon     = 24 * time.Hour
	DefaultReclaimInterval    = time.Second
	DefaultSnapshotInterval   = 5 * time.Minute
	DefaultShutdownDrain      = time.Second
	DefaultShutdownTimeout    = 10 * time.Second // Run's default
)

// setDefaults fills zero fields with their defaults and refuses values
// that mean nothing (a negative duration or count): a typo must fail
// loudly, not run with a default the user did not ask for.
func (c *Config) setDefaults() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"join-interval", c.JoinInterval}, {"join-timeout", c.JoinTimeout}, {"sync-interval", c.SyncInterval},
		{"delta-interval", c.DeltaInterval}, {"delta-gap", c.DeltaGap}, {"idempotency-window", c.IdempotencyWindow},
		{"discovery-interval", c.DiscoveryInterval}, {"suspect-after", c.SuspectAfter}, {"dead-after", c.DeadAfter},
		{"max-clock-skew", c.MaxClockSkew}, {"expiry-grace", c.ExpiryGrace}, {"reclaim-horizon", c.ReclaimHorizon},
		{"member-horizon", c.MemberHorizon}, {"reclaim-interval", c.ReclaimInterval},
		{"snapshot-interval", c.SnapshotInterval}, {"fsync-interval", c.FsyncInterval},
		{"resp-idle-timeout", c.RESPIdleTimeout},
	} {
		if d.v < 0 {
			return fmt.Errorf("%w: %s must not be negative (got %v; 0 means the default)", ErrConfig, d.name, d.v)
		}
	}
	if c.DeltaGap > MaxDeltaGap {
		return fmt.Errorf("%w: delta-gap must be at most %v (got %v): with a longer gap a node's changes would wait for anti-entropy rather than be pushed", ErrConfig, MaxDeltaGap, c.DeltaGap)
	}
	if c.Fanout < 0 || c.MaxIdempotencyKeys < 0 || c.RESPMaxClients < 0 {
		return fmt.Errorf("%w: fanout, the idempotency key limit and resp-max-clients must not be negative", ErrConfig)
	}
	if c.Name == "" {
		c.Name = hostname()
	}
	if c.GossipAddr == "" {
		c.GossipAddr = DefaultGossipAddr
	}
	if c.Cluster == "" {
		c.Cluster = DefaultCluster
	}
	c.JoinInterval = cmp.Or(c.JoinInterval, DefaultJoinInterval)
	c.JoinTimeout = cmp.Or(c.JoinTimeout, DefaultJoinTimeout)
	c.SyncInterval = cmp.Or(c.SyncInterval, DefaultSyncInterval)
	c.DeltaInterval = cmp.Or(c.DeltaInterval, DefaultDeltaInterval)
	c.Fanout = cmp.Or(c.Fanout, DefaultFanout)
	c.IdempotencyWindow = cmp.Or(c.IdempotencyWindow, DefaultIdempotencyWindow)
	c.MaxIdempotencyKeys = cmp.Or(c.MaxIdempotencyKeys, DefaultMaxIdempotencyKeys)
	c.DiscoveryInterval = cmp.Or(c.DiscoveryInterval, DefaultDiscoveryInterval)
	c.SuspectAfter = cmp.Or(c.SuspectAfter, DefaultSuspectAfter)
	c.DeadAfter = cmp.Or(c.DeadAfter, DefaultDeadAfter)
	if c.DeadAfter <= c.SuspectAfter {
		return fmt.Errorf("%w: dead-after (%v) must be longer than suspect-after (%v)", ErrConfig, c.DeadAfter, c.SuspectAfter)
	}
	c.MaxClockSkew = cmp.Or(c.MaxClockSkew, DefaultMaxClockSkew)
	c.ExpiryGrace = cmp.Or(c.ExpiryGrace, 2*c.MaxClockSkew)
	c.ReclaimHorizon = cmp.Or(c.ReclaimHorizon, DefaultReclaimHorizon)
	if c.ReclaimHorizon <= c.ExpiryGrace {
		return fmt.Errorf("%w: reclaim-horizon (%v) must be longer than expiry-grace (%v)", ErrConfig, c.ReclaimHorizon, c.ExpiryGrace)
	}
	if c.MemberHorizon > 0 && c.MemberHorizon <= c.DeadAfter {
		return fmt.Errorf("%w: member-horizon (%v) must be longer than dead-after (%v)", ErrConfig, c.MemberHorizon, c.DeadAfter)
	}
	c.MemberHorizon = cmp.Or(c.MemberHorizon, max(c.ReclaimHorizon, 2*c.DeadAfter))
	c.ReclaimInterval = cmp.Or(c.ReclaimInterval, DefaultReclaimInterval)
	c.SnapshotInterval = cmp.Or(c.SnapshotInterval, DefaultSnapshotInterval)
	// ShutdownDrain: negative turns the drain off (documented on the field).
	c.ShutdownDrain = cmp.Or(c.ShutdownDrain, DefaultShutdownDrain)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	if len(c.Cluster) > wire.MaxClusterLen {
		return fmt.Errorf("%w: cluster name longer than %d bytes", ErrConfig, wire.MaxClusterLen)
	}
	return nil
}

// Node is a running replica.
type Node struct {
	cfg  Config
	id   crdt.ReplicaID
	log  *slog.Logger
	clk  clock.Clock
	ep   Endpoint
	http *httpserve.Server
	// handler is the client API over net/http: every route; http answers
	// the common ones without it (api.Quick).
	handler http.Handler
	drain   *drainer // in front of http's handler
	ln      net.Listener
	// respLn and resp serve the Redis protocol (nil without RESPAddr).
	respLn net.Listener
	resp   *respserver.Server

	// Storage; all nil without a data dir.
	dir         *datadir.Dir
	incarnation uint64 // highest member incarnation made durable; under incMu
	incMu       sync.Mutex
	// Remembered time (idempotency.go): rBase milliseconds at rStart.
	rBase        int64
	rStart       time.Time
	wal          *wal.Log
	recovery     wal.Recovery
	lastSnapshot uint64 // LSN of the last snapshot; snapshot goroutine only

	mu      sync.Mutex
	ks      *crdt.Keyspace
	pending map[string]pendingPN // own totals reserved by writes not yet durable
	// pendingMetas are the metas (expiries, deletes) of logged records not
	// yet durable, by commit: a snapshot covers every queued record, so it
	// must hold them as it holds pending.
	pendingMetas map[uint64][]crdt.Meta
	metaSeq      uint64
	// reclaimedSinceSnapshot makes the next snapshot due even if nothing
	// was logged: reclaim freed keys the last snapshot still holds.
	reclaimedSinceSnapshot bool
	// Idempotency keys (see idempotency.go).
	idem         map[string]wal.Idem
	idemOrder    []idemSlot
	idemWait     map[string]chan struct{}
	idemInFlight map[string]wal.Idem // keyed writes reserved, not yet remembered
	// heldKeys are the keys of Writes calls that split, by call (see
	// writes.go): no other write to them may come between their groups.
	heldKeys map[string]chan struct{}
	eng      *gossip.Engine
	joined   chan struct{} // closed by the first JoinAck
	conflict error         // set by replicaConflict: writes are refused
	flushAt  clock.Timer   // armed while a delta flush is scheduled
	flushDue time.Time     // when the armed flush comes due
	flushed  time.Time     // when the last delta flush ran

	memb    *membership.Engine // the member protocol; under mu
	members *membership.List   // memb's list, for queries; under mu

	disc *discoveryclient.Client // nil without --discovery

	joinTargets []joinaddr.Target   // Config.Join, parsed
	resolveLog  joinaddr.LogLimiter // one warning a minute per failing name
	unresolved  map[string]bool     // specs that failed last time; join and dnsJoinLoop only, never at once
	metrics     *metrics

	logLimit rateLimiter
	ctx      context.Context // cancelled by Shutdown, for outbound calls
	cancel   context.CancelFunc
	stop     chan struct{}
	wg       sync.WaitGroup
	once     sync.Once
}

// New starts a node: it binds its ports, joins the cluster and serves.
func New(ctx context.Context, cfg Config) (*Node, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	targets, err := joinaddr.ParseList(cfg.Join)
	if err != nil {
		return nil, fmt.Errorf("%w: --join: %w", ErrConfig, err)
	}
	n := &Node{
		cfg:          cfg,
		log:          cfg.Logger,
		clk:          cfg.Clock,
		ks:           crdt.New(),
		pending:      make(map[string]pendingPN),
		pendingMetas: make(map[uint64][]crdt.Meta),
		idem:         make(map[string]wal.Idem),
		idemWait:     make(map[string]chan struct{}),
		idemInFlight: make(map[string]wal.Idem),
		heldKeys:     make(map[string]chan struct{}),
		joined:       make(chan struct{}),
		stop:         make(chan struct{}),
		joinTargets:  targets,
		resolveLog:   joinaddr.LogLimiter{Every: joinaddr.DefaultLogEvery},
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.metrics = newMetrics()
	n.eng = gossip.New(gossip.Config{Fanout: cfg.Fanout}, n.ks)
	if cfg.DataDir != "" {
		if err := n.openStorage(); err != nil {
			return nil, err
		}
	} else {
		n.id = randomReplicaID()
		n.incarnation = 1 // a new replica every start: nothing to outgrow
		n.rStart = n.clk.Now()
	}
	n.log = n.log.With("replica", n.id.String())

	if cfg.Transport != nil {
		n.ep, err = cfg.Transport(n.receive)
	} else {
		n.ep, err = transport.Listen(transport.Config{
			BindAddr: cfg.GossipAddr, AdvertiseAddr: cfg.AdvertiseAddr, Cluster: cfg.Cluster,
			Keys: cfg.ClusterKeys, Logger: n.log.With("component", "transport"), Clock: cfg.Clock,
		}, n.receive)
	}
	if err != nil {
		n.closeStorageOnError()
		return nil, fmt.Errorf("node: gossip listener: %w", err)
	}
	if cfg.HTTPAddr != "" {
		if n.ln, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			n.ep.Close()
			n.closeStorageOnError()
			return nil, fmt.Errorf("node: client API listener: %w", err)
		}
		if cfg.TLS != nil {
			n.ln = tls.NewListener(n.ln, cfg.TLS)
		}
	}
	if err := n.listenRESP(); err != nil {
		if n.ln != nil {
			n.ln.Close()
		}
		n.ep.Close()
		n.closeStorageOnError()
		return nil, err
	}
	httpAddr := cfg.AdvertiseHTTPAddr
	if httpAddr == "" && n.ln != nil {
		httpAddr = advertisedHTTP(n.ln.Addr().(*net.TCPAddr), n.ep.Addr())
	}
	n.memb = membership.NewEngine(membership.Config{
		Self: membership.Member{
			ID: n.id, Name: cfg.Name, GossipAddr: n.ep.Addr(), HTTPAddr: httpAddr,
			Incarnation: n.incarnation,
		},
		Detect: membership.DetectConfig{
			SuspectAfter: cfg.SuspectAfter, DeadAfter: cfg.DeadAfter,
			// Only a real freeze of this node counts as a stall, not a tick
			// that came late on a busy machine.
			Stall: max(cfg.SuspectAfter/2, 3*cfg.SyncInterval),
		},
		Fanout: cfg.Fanout, MaxClockSkew: cfg.MaxClockSkew, Horizon: cfg.MemberHorizon,
	}, n.clk.Now())
	n.members = n.memb.List()
	if len(cfg.Discovery) > 0 {
		// Requests to discovery are signed with the cluster key, so that
		// only members can register, and the answers verified with it.
		n.disc = discoveryclient.New(discoveryclient.Config{URLs: cfg.Discovery, Self: discoveryclient.Entry{
			ID: n.id.String(), Name: cfg.Name, GossipAddr: n.ep.Addr(), HTTPAddr: httpAddr,
		}, Keyring: n.keyring(), HTTP: &http.Client{Timeout: 2 * time.Second,
			Transport: &http.Transport{TLSClientConfig: cfg.DiscoveryTLS, Proxy: http.ProxyFromEnvironment}}})
	}

	n.metrics.attach(n)
	n.wg.Add(2)
	go n.loop()
	go n.reclaimLoop()
	if n.wal != nil {
		n.wg.Add(1)
		go n.snapshotLoop()
	}
	if err := n.join(ctx); err != nil {
		n.Shutdown(context.Background())
		return nil, err
	}
	if n.disc != nil {
		n.wg.Add(1)
		go n.discoveryLoop()
	}
	if joinaddr.HasDynamic(n.joinTargets) {
		n.wg.Add(1)
		go n.dnsJoinLoop()
	}
	if n.ln != nil {
		svc := service.Instrument(n, n.metrics.ops, "http")
		apiLog := n.log.With("component", "api")
		var h http.Handler = api.NewHandler(svc, apiLog, n.metrics.handler)
		if cfg.Auth != nil {
			h = api.Authorize(h, cfg.Auth)
		}
		// The proof route has its own authentication (the cluster key), so
		// it sits outside client authorisation.
		// A draining node is still a member: the proof route stays outside
		// the drain, so a gateway sees it unhealthy (its /health answers
		// 503), not failing its proof.
		n.drain = &drainer{next: h, clk: n.clk}
		// The dashboard's files carry no data: outside authorisation; the
		// page reads everything through the API.
		n.handler = memberproof.Mount(ui.Mount(n.drain), n.prover(httpAddr))
		hcfg := httpserve.Config{Handler: n.handler, Open: n.drain.open, Log: apiLog}
		// The quick path answers counter reads and writes as the handler
		// would, with the same instrumented service and the same tokens.
		quick := &api.Quick{Service: svc, Log: hcfg.Log}
		if ba, ok := cfg.Auth.(api.BearerAuthenticator); ok || cfg.Auth == nil {
			quick.Auth = ba
			hcfg.Quick = quick
		}
		n.http = httpserve.New(hcfg)
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			if err := n.http.Serve(n.ln); err != nil {
				n.log.Error("client API server stopped", "err", err)
			}
		}()
	}
	n.serveRESP()
	n.log.Info("node started", "name", cfg.Name, "gossip_addr", n.ep.Addr(), "http_addr", httpAddr, "resp_addr", n.RESPAddr(), "cluster", cfg.Cluster)
	return n, nil
}

// advertisedHTTP is the bound HTTP address, unless it is a wildcard: then
// the host peers reach us at (from the gossip advertise address) with the
// HTTP port.
func advertisedHTTP(bound *net.TCPAddr, gossipAdvertise string) string {
	if !bound.IP.IsUnspecified() {
		return bound.String()
	}
	host, _, err := net.SplitHostPort(gossipAdvertise)
	if err != nil {
		return bound.String()
	}
	return net.JoinHostPort(host, fmt.Sprint(bound.Port))
}

func (n *Node) memberCount() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.members.Len()
}

// closeStorageOnError releases the data dir when New fails before the
// node ran; the dir is not marked clean.
// keyCount reports the keys held, live or not.
func (n *Node) keyCount() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ks.Len()
}

func (n *Node) closeStorageOnError() {
	if n.wal != nil {
		n.wal.Close()
		n.dir.Close()
	}
}

// ID returns the node's replica ID.
func (n *Node) ID() crdt.ReplicaID { return n.id }

// GossipAddr returns the advertised gossip address.
func (n *Node) GossipAddr() string { return n.ep.Addr() }

// HTTPAddr returns the client API's bound address, or "".
func (n *Node) HTTPAddr() string {
	if n.ln == nil {
		return ""
	}
	return n.ln.Addr().String()
}

// Run blocks until ctx ends (a signal, in 'dcounter node'), then stops the
// node with Shutdown, giving the drain and the requests in flight at most
// timeout (0: DefaultShutdownTimeout). It returns Shutdown's error: nil
// after a clean stop.
func (n *Node) Run(ctx context.Context, timeout time.Duration) error {
	<-ctx.Done()
	n.log.Info("shutting down")
	if timeout <= 0 {
		timeout = DefaultShutdownTimeout
	}
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return n.Shutdown(sctx)
}

// Shutdown drains the client API and the Redis-protocol listener
// (Config.ShutdownDrain), stops serving clients (letting in-flight
// requests finish until ctx ends), pushes the changes not yet pushed, says
// goodbye to its peers, stops gossip, closes the transport
// and, with a data dir, writes a final snapshot and records a clean stop.
// It returns every error met on the way, joined. It is idempotent and
// waits for every goroutine the node started.
func (n *Node) Shutdown(ctx context.Context) error {
	var err error
	n.once.Do(func() {
		if n.cfg.ShutdownDrain > 0 && (n.http != nil || n.resp != nil) {
			// Both client listeners refuse every request (HTTP 503, RESP
			// TRYAGAIN: certainly not applied) until neither has had one
			// for drainQuiet, so that closing them cuts no request short.
			d := n.drain
			if d == nil {
				d = &drainer{clk: n.clk}
			}
			if n.resp != nil {
				d.also = n.resp.Drained
				n.resp.Drain()
			}
			n.log.Info("draining the client API: every request is refused (HTTP 503, RESP TRYAGAIN) until it goes quiet", "at_most", n.cfg.ShutdownDrain)
			d.drain(ctx, n.cfg.ShutdownDrain, drainQuiet)
		}
		if n.http != nil {
			err = n.http.Shutdown(ctx)
		} else if n.ln != nil {
			n.ln.Close()
		}
		// Commands in flight answer (their writes need the log, closed
		// last); then every Redis-protocol connection is closed.
		if n.resp != nil {
			err = errors.Join(err, n.resp.Shutdown(ctx))
		} else if n.respLn != nil {
			n.respLn.Close()
		}
		close(n.stop)
		n.cancel()
		n.mu.Lock()
		if n.flushAt != nil && n.flushAt.Stop() {
			n.wg.Done() // the armed flush will not run
		}
		// Push what was not pushed yet (writes acknowledged since the
		// last push, at most a delta gap ago), so peers hold it even if this replica's data dir
		// never comes back. Then say goodbye, so peers stop gossiping with
		// us at once instead of suspecting us for seconds. Best effort,
		// bounded.
		out := n.eng.Flush(n.members.Peers())
		out = appendMember(out, n.memb.Leave(n.clk.Now()))
		n.mu.Unlock()
		n.send(out)
		fctx, fcancel := context.WithTimeout(context.Background(), time.Second)
		n.ep.Flush(fctx)
		fcancel()
		err = errors.Join(err, n.ep.Close())
		n.wg.Wait()
		if n.wal != nil {
			err = errors.Join(err, n.closeStorage())
		}
		n.log.Info("node stopped")
	})
	return err
}
