// Package node runs one dcounter replica: it wires the keyspace, the gossip
// engine, the member list and the transport together, owns every goroutine,
// and serves the client API.
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
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/dcounter/dcounter/internal/api"
	"github.com/dcounter/dcounter/internal/clock"
	"github.com/dcounter/dcounter/internal/crdt"
	"github.com/dcounter/dcounter/internal/datadir"
	"github.com/dcounter/dcounter/internal/discovery"
	"github.com/dcounter/dcounter/internal/gossip"
	"github.com/dcounter/dcounter/internal/membership"
	"github.com/dcounter/dcounter/internal/transport"
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
	Join []string
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
	// ClusterKey, if set, is the 32-byte AES-256-GCM key sealing every frame.
	ClusterKey []byte
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
	// DeltaInterval is how long local changes are batched before being pushed. Default 5ms.
	DeltaInterval time.Duration
	// Fanout is the number of peers each delta goes to. Default 3.
	Fanout int
	// Logger receives the node's logs. Default: discard.
	Logger *slog.Logger
	// Clock drives timers. Default: the wall clock.
	Clock clock.Clock
	// Transport, if set, builds the endpoint instead of a TCP listener on
	// GossipAddr (tests use transport.MemNetwork).
	Transport func(transport.Handler) (Endpoint, error)
}

func (c *Config) setDefaults() error {
	if c.Name == "" {
		c.Name = hostname()
	}
	if c.GossipAddr == "" {
		c.GossipAddr = "127.0.0.1:7946"
	}
	if c.Cluster == "" {
		c.Cluster = "dcounter"
	}
	if c.JoinTimeout <= 0 {
		c.JoinTimeout = 5 * time.Second
	}
	if c.SyncInterval <= 0 {
		c.SyncInterval = 500 * time.Millisecond
	}
	if c.DeltaInterval <= 0 {
		c.DeltaInterval = 5 * time.Millisecond
	}
	if c.Fanout <= 0 {
		c.Fanout = 3
	}
	if c.IdempotencyWindow <= 0 {
		c.IdempotencyWindow = time.Hour
	}
	if c.MaxIdempotencyKeys <= 0 {
		c.MaxIdempotencyKeys = 1_000_000
	}
	if c.DiscoveryInterval <= 0 {
		c.DiscoveryInterval = time.Second
	}
	if c.SuspectAfter <= 0 {
		c.SuspectAfter = 1500 * time.Millisecond
	}
	if c.DeadAfter <= 0 {
		c.DeadAfter = 3 * time.Second
	}
	if c.DeadAfter <= c.SuspectAfter {
		return fmt.Errorf("%w: dead-after (%v) must be longer than suspect-after (%v)", ErrConfig, c.DeadAfter, c.SuspectAfter)
	}
	if c.SnapshotInterval <= 0 {
		c.SnapshotInterval = 5 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	if len(c.Cluster) > wire.MaxClusterLen {
		return fmt.Errorf("%w: cluster name longer than %d bytes", ErrConfig, wire.MaxClusterLen)
	}
	if c.ClusterKey != nil && len(c.ClusterKey) != 32 {
		return fmt.Errorf("%w: cluster key must be 32 bytes, got %d", ErrConfig, len(c.ClusterKey))
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
	http *http.Server
	ln   net.Listener

	// Storage; all nil without a data dir.
	dir          *datadir.Dir
	wal          *wal.Log
	recovery     wal.Recovery
	lastSnapshot uint64 // LSN of the last snapshot; snapshot goroutine only

	mu      sync.Mutex
	ks      *crdt.Keyspace
	pending map[string]crdt.PN // own totals reserved by writes not yet durable
	// Idempotency keys (see idempotency.go).
	idem      map[string]wal.Idem
	idemOrder []string
	idemWait  map[string]chan struct{}
	eng       *gossip.Engine
	members   *membership.List
	joined    chan struct{} // closed by the first JoinAck
	conflict  error         // set by replicaConflict: writes are refused
	flushAt   clock.Timer   // armed while a delta flush is scheduled

	disc    *discovery.Client // nil without --discovery
	metrics *metrics

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
	n := &Node{
		cfg:      cfg,
		log:      cfg.Logger,
		clk:      cfg.Clock,
		ks:       crdt.New(),
		pending:  make(map[string]crdt.PN),
		idem:     make(map[string]wal.Idem),
		idemWait: make(map[string]chan struct{}),
		joined:   make(chan struct{}),
		stop:     make(chan struct{}),
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
	}
	n.log = n.log.With("replica", n.id.String())

	var err error
	if cfg.Transport != nil {
		n.ep, err = cfg.Transport(n.receive)
	} else {
		n.ep, err = transport.Listen(transport.Config{
			BindAddr: cfg.GossipAddr, AdvertiseAddr: cfg.AdvertiseAddr, Cluster: cfg.Cluster,
			Key: cfg.ClusterKey, Logger: n.log.With("component", "transport"), Clock: cfg.Clock,
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
	}
	httpAddr := cfg.AdvertiseHTTPAddr
	if httpAddr == "" && n.ln != nil {
		httpAddr = advertisedHTTP(n.ln.Addr().(*net.TCPAddr), n.ep.Addr())
	}
	n.members = membership.New(membership.Member{
		ID: n.id, Name: cfg.Name, GossipAddr: n.ep.Addr(), HTTPAddr: httpAddr,
		Incarnation: uint64(n.clk.Now().UnixMilli()),
	}, n.clk.Now())
	if len(cfg.Discovery) > 0 {
		n.disc = discovery.NewClient(cfg.Discovery, discovery.Entry{
			ID: n.id.String(), Name: cfg.Name, GossipAddr: n.ep.Addr(), HTTPAddr: httpAddr,
		}, 2*time.Second)
	}

	n.metrics.attach(n)
	n.wg.Add(1)
	go n.loop()
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
	if n.ln != nil {
		n.http = api.NewServer(api.NewHandler(n, n.log.With("component", "api"), n.metrics.handler))
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			if err := n.http.Serve(n.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				n.log.Error("client API server stopped", "err", err)
			}
		}()
	}
	n.log.Info("node started", "name", cfg.Name, "gossip_addr", n.ep.Addr(), "http_addr", httpAddr, "cluster", cfg.Cluster)
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

// join asks the join targets — --join and, with discovery, the peers the
// discovery servers list — for the member list until one answers.
func (n *Node) join(ctx context.Context) error {
	var explicit, targets []string
	for _, t := range n.cfg.Join {
		if t != "" && t != n.ep.Addr() {
			explicit = append(explicit, t)
		}
	}
	targets = append(targets, explicit...)
	if n.disc != nil {
		if err := n.disc.Register(ctx); err != nil {
			if !n.cfg.Bootstrap {
				return fmt.Errorf("%w %v: %v (is it running? use --bootstrap to start anyway; the node keeps trying to register)",
					ErrDiscovery, n.cfg.Discovery, err)
			}
			n.log.Warn("discovery server unreachable: bootstrapping; will keep trying to register", "err", err)
		} else if peers, err := n.disc.Peers(ctx); err == nil {
			for _, p := range peers {
				if p.GossipAddr != n.ep.Addr() && !slices.Contains(targets, p.GossipAddr) {
					targets = append(targets, p.GossipAddr)
				}
			}
		}
	}
	if len(targets) == 0 {
		if len(n.cfg.Join) > 0 {
			n.log.Info("join list names only this node: starting a new cluster")
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.JoinTimeout)
	defer cancel()
	retry := n.clk.NewTicker(250 * time.Millisecond)
	defer retry.Stop()
	for {
		n.sendJoin(targets)
		select {
		case <-n.joined:
			n.log.Info("joined cluster", "via", targets, "members", n.memberCount())
			return nil
		case <-retry.C():
		case <-ctx.Done():
			switch {
			case n.cfg.Bootstrap:
				n.log.Warn("no join target answered: bootstrapping a new cluster", "targets", targets)
				return nil
			case len(explicit) == 0:
				// Only discovered peers, none answering: stale entries, or a
				// cluster starting all at once. Start alone; discovery keeps
				// introducing us to whoever registers.
				n.log.Warn("no discovered peer answered: starting alone until discovery finds a live one", "peers", targets)
				return nil
			}
			return fmt.Errorf("%w: no answer from %v within %v (is a member running there, with the same cluster name and key? use --bootstrap to start a new cluster instead)",
				ErrJoin, explicit, n.cfg.JoinTimeout)
		}
	}
}

// sendJoin asks each target to add us and answer with its member list.
func (n *Node) sendJoin(targets []string) {
	n.mu.Lock()
	msg, err := wire.Encode(n.cfg.Cluster, &wire.Join{Self: membership.ToWire(n.members.Self())})
	n.mu.Unlock()
	if err != nil {
		n.log.Error("encode join", "err", err)
		return
	}
	for _, t := range targets {
		_ = n.ep.Send(t, msg) // unreachable targets are retried by the caller
	}
}

// discoveryLoop heartbeats to the discovery servers and introduces us to
// every live peer they list that we do not know, or believe dead.
func (n *Node) discoveryLoop() {
	defer n.wg.Done()
	t := n.clk.NewTicker(n.cfg.DiscoveryInterval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-n.stop:
			return
		case <-t.C():
		}
		ctx, cancel := context.WithTimeout(n.ctx, n.cfg.DiscoveryInterval)
		err := n.disc.Heartbeat(ctx)
		var peers []discovery.Entry
		if err == nil {
			peers, err = n.disc.Peers(ctx)
		}
		cancel()
		switch {
		case err != nil && !failing:
			failing = true
			n.log.Warn("discovery server unreachable; gossip carries on without it", "err", err)
		case err == nil && failing:
			failing = false
			n.log.Info("discovery server reachable again")
		}
		var targets []string
		n.mu.Lock()
		for _, p := range peers {
			id, perr := crdt.ParseReplicaID(p.ID)
			if perr != nil || id == n.id || p.GossipAddr == n.ep.Addr() {
				continue
			}
			if m, ok := n.members.Get(id); !ok || m.State == membership.Dead {
				targets = append(targets, p.GossipAddr)
			}
		}
		n.mu.Unlock()
		if len(targets) > 0 {
			n.log.Debug("introducing ourselves to discovered peers", "peers", targets)
			n.sendJoin(targets)
		}
	}
}

func (n *Node) memberCount() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.members.Len()
}

// closeStorageOnError releases the data dir when New fails before the
// node ran; the dir is not marked clean.
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

// Shutdown stops serving clients (letting in-flight requests finish until
// ctx ends), says goodbye to its peers, stops gossip, closes the transport
// and, with a data dir, writes a final snapshot and records a clean stop.
// It returns every error met on the way, joined. It is idempotent and
// waits for every goroutine the node started.
func (n *Node) Shutdown(ctx context.Context) error {
	var err error
	n.once.Do(func() {
		if n.http != nil {
			err = n.http.Shutdown(ctx)
		} else if n.ln != nil {
			n.ln.Close()
		}
		close(n.stop)
		n.cancel()
		n.mu.Lock()
		if n.flushAt != nil {
			n.flushAt.Stop()
		}
		// Say goodbye, so peers stop gossiping with us at once instead of
		// suspecting us for seconds. Best effort, bounded.
		n.members.Leave(n.clk.Now())
		bye := &wire.Members{Members: n.members.Wire()}
		var out []gossip.Outbound
		for _, p := range n.members.Peers() {
			out = append(out, gossip.Outbound{To: p, Msg: bye})
		}
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

// loop runs the periodic work: anti-entropy, member gossip, heartbeats.
func (n *Node) loop() {
	defer n.wg.Done()
	t := n.clk.NewTicker(n.cfg.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C():
			n.tick()
		}
	}
}

func (n *Node) tick() {
	now := n.clk.Now()
	n.mu.Lock()
	n.expireIdem()
	n.members.Beat(now)
	for _, c := range n.members.Detect(now, membership.DetectConfig{
		SuspectAfter: n.cfg.SuspectAfter, DeadAfter: n.cfg.DeadAfter,
		// Only a real freeze of this node counts as a stall, not a tick
		// that came late on a busy machine.
		Stall: max(n.cfg.SuspectAfter/2, 3*n.cfg.SyncInterval),
	}) {
		n.log.Info("member "+c.To.String(), "member", c.Member.Name, "id", c.Member.ID, "gossip_addr", c.Member.GossipAddr,
			"silent_for", now.Sub(c.Member.LastSeen).Round(time.Millisecond))
	}
	peers := n.members.Peers()
	out := n.eng.Sync(peers)
	view := &wire.Members{Members: n.members.Wire()}
	if len(peers) > 0 {
		// Push our view to one random peer; it answers with its own if it
		// knows something we don't (push-pull).
		out = append(out, gossip.Outbound{To: peers[randIntN(len(peers))], Msg: view})
	}
	if dead := n.members.DeadPeers(); len(dead) > 0 {
		// Knock on one dead member's door: if it is back, or the partition
		// healed, its answer makes it alive again within a round trip.
		out = append(out, gossip.Outbound{To: dead[randIntN(len(dead))], Msg: view})
	}
	n.mu.Unlock()
	n.send(out)
}

// scheduleFlush arms the delta timer if it is not armed. Caller holds mu.
func (n *Node) scheduleFlush() {
	if n.flushAt != nil {
		return
	}
	n.flushAt = n.clk.AfterFunc(n.cfg.DeltaInterval, n.flush)
}

func (n *Node) flush() {
	select {
	case <-n.stop:
		return
	default:
	}
	n.mu.Lock()
	n.flushAt = nil
	out := n.eng.Flush(n.members.Peers())
	n.mu.Unlock()
	n.send(out)
}

// send encodes each distinct message once and hands it to the transport.
func (n *Node) send(out []gossip.Outbound) {
	var (
		last    wire.Message
		payload []byte
	)
	for _, o := range out {
		if o.Msg != last {
			var err error
			if payload, err = wire.Encode(n.cfg.Cluster, o.Msg); err != nil {
				n.log.Error("encode failed", "type", o.Msg.Type(), "err", err)
				last, payload = nil, nil
				continue
			}
			last = o.Msg
		}
		n.metrics.message(o.Msg.Type(), "out", len(payload))
		if err := n.ep.Send(o.To, payload); err != nil {
			n.metrics.sendFails.Inc()
			n.logLimit.do(n.clk.Now(), "send:"+o.To, func() {
				n.log.Warn("message to peer dropped", "peer", o.To, "type", o.Msg.Type(), "err", err)
			})
		}
	}
}

// receive handles one message from a peer; called by the transport.
func (n *Node) receive(from string, payload []byte) {
	m, err := wire.Decode(n.cfg.Cluster, payload)
	if err != nil {
		n.logLimit.do(n.clk.Now(), "decode:"+from, func() {
			n.log.Warn("dropped a message", "peer", from, "err", err)
		})
		return
	}
	n.metrics.message(m.Type(), "in", len(payload))
	now := n.clk.Now()
	var (
		out     []gossip.Outbound
		changed []crdt.Entry
	)
	n.mu.Lock()
	switch m := m.(type) {
	case *wire.Join:
		if crdt.ReplicaID(m.Self.ID) == n.id && m.Self.GossipAddr == n.ep.Addr() {
			break // our own Join, through an alias of our address: not a cluster
		}
		added, conflict := n.members.Merge([]wire.Member{m.Self}, now)
		if conflict || crdt.ReplicaID(m.Self.ID) == n.id {
			n.replicaConflict(fmt.Sprintf("a node at %s joined with this node's replica ID", m.Self.GossipAddr))
			break
		}
		out = append(out, gossip.Outbound{To: from, Msg: &wire.JoinAck{Members: n.members.Wire()}})
		out = append(out, n.announce(added, from)...)
	case *wire.JoinAck:
		if from == n.ep.Addr() {
			break // answered by ourselves
		}
		if _, conflict := n.members.Merge(m.Members, now); conflict {
			n.replicaConflict("a peer lists this node's replica ID at another address")
		}
		n.members.HeardFrom(from, now)
		select {
		case <-n.joined:
		default:
			close(n.joined)
		}
	case *wire.Members:
		added, conflict := n.members.Merge(m.Members, now)
		if conflict {
			n.replicaConflict("a peer lists this node's replica ID at another address")
		}
		n.members.HeardFrom(from, now)
		out = n.announce(added, from)
		if n.members.Newer(m.Members) {
			out = append(out, gossip.Outbound{To: from, Msg: &wire.JoinAck{Members: n.members.Wire()}})
		}
	default:
		out, changed = n.eng.Handle(from, m)
		for _, c := range changed {
			if c.Replica == n.id {
				// Only we raise our totals, and nothing leaves us before it
				// is durable: a peer holding more of our replica than we do
				// means our history was lost (a restored backup, a copied
				// data dir) while we kept the ID.
				n.replicaConflict(fmt.Sprintf("peer %s holds higher totals for this node's replica than this node", from))
				break
			}
		}
		if len(changed) > 0 {
			via := "repair"
			if m.Type() == wire.TypeDelta {
				via = "delta"
			}
			n.metrics.merged.WithLabelValues(via).Add(float64(len(changed)))
		}
		if len(changed) > 0 && n.eng.Pending() {
			n.scheduleFlush()
		}
	}
	n.mu.Unlock()
	if len(changed) > 0 && n.wal != nil {
		// Merged remote state is logged too, so a node (or a whole cluster)
		// restarted at once comes back with everything it had. No need to
		// wait: its owners hold it durably.
		n.wal.AppendAsync(changed)
	}
	n.send(out)
}

// replicaConflict records that another process uses, or used, this node's
// replica ID with a history this node lacks. Writes acknowledged now could
// vanish in the merge (invariant 4), so the node refuses writes and reports
// unhealthy until it is restarted with --new-replica. Caller holds mu.
func (n *Node) replicaConflict(why string) {
	if n.conflict != nil {
		return
	}
	n.conflict = fmt.Errorf("%w: %s; refusing writes: restart this node with --new-replica", ErrReplicaConflict, why)
	n.log.Error("replica ID conflict", "replica", n.id, "err", n.conflict)
}

// announce spreads news of members we just learned about to a few peers, so
// a join is known cluster-wide within a round trip instead of a sync interval.
// Caller holds mu.
func (n *Node) announce(added []membership.Member, except string) []gossip.Outbound {
	if len(added) == 0 {
		return nil
	}
	for _, a := range added {
		n.log.Info("member joined", "member", a.Name, "id", a.ID, "gossip_addr", a.GossipAddr)
	}
	msg := &wire.Members{Members: n.members.Wire()}
	var out []gossip.Outbound
	peers := n.members.Peers()
	for _, i := range randPerm(len(peers)) {
		if len(out) == n.cfg.Fanout {
			break
		}
		if peers[i] != except {
			out = append(out, gossip.Outbound{To: peers[i], Msg: msg})
		}
	}
	return out
}
