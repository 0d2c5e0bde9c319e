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
	"sync"
	"time"

	"github.com/dcounter/dcounter/internal/api"
	"github.com/dcounter/dcounter/internal/clock"
	"github.com/dcounter/dcounter/internal/crdt"
	"github.com/dcounter/dcounter/internal/datadir"
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
	Close() error
}

var (
	_ Endpoint = (*transport.TCP)(nil)
	_ Endpoint = (*transport.MemEndpoint)(nil)
)

// Errors returned by New.
var (
	ErrJoin   = errors.New("node: could not join the cluster")
	ErrConfig = errors.New("node: invalid configuration")
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
	// Join lists members to join through; empty starts a new cluster.
	Join []string
	// Bootstrap starts a new cluster when no Join target answers, instead of failing.
	Bootstrap bool
	// JoinTimeout bounds how long joining may take. Default 5s.
	JoinTimeout time.Duration
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
	eng     *gossip.Engine
	members *membership.List
	joined  chan struct{} // closed by the first JoinAck
	flushAt clock.Timer   // armed while a delta flush is scheduled

	logLimit rateLimiter
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
		cfg:     cfg,
		log:     cfg.Logger,
		clk:     cfg.Clock,
		ks:      crdt.New(),
		pending: make(map[string]crdt.PN),
		joined:  make(chan struct{}),
		stop:    make(chan struct{}),
	}
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
	httpAddr := ""
	if n.ln != nil {
		httpAddr = n.ln.Addr().String()
	}
	n.members = membership.New(membership.Member{
		ID: n.id, Name: cfg.Name, GossipAddr: n.ep.Addr(), HTTPAddr: httpAddr,
		Incarnation: uint64(n.clk.Now().UnixMilli()),
	}, n.clk.Now())

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
	if n.ln != nil {
		n.http = api.NewServer(api.NewHandler(n, n.log.With("component", "api")))
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

// join asks the join targets for the member list until one answers.
func (n *Node) join(ctx context.Context) error {
	var targets []string
	for _, t := range n.cfg.Join {
		if t != "" && t != n.ep.Addr() {
			targets = append(targets, t)
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
		n.mu.Lock()
		msg, err := wire.Encode(n.cfg.Cluster, &wire.Join{Self: membership.ToWire(n.members.Self())})
		n.mu.Unlock()
		if err != nil {
			return err
		}
		for _, t := range targets {
			_ = n.ep.Send(t, msg) // unreachable targets are retried below
		}
		select {
		case <-n.joined:
			n.log.Info("joined cluster", "via", targets, "members", n.memberCount())
			return nil
		case <-retry.C():
		case <-ctx.Done():
			if n.cfg.Bootstrap {
				n.log.Warn("no join target answered: bootstrapping a new cluster", "targets", targets)
				return nil
			}
			return fmt.Errorf("%w: no answer from %v within %v (is a member running there, with the same cluster name and key? use --bootstrap to start a new cluster instead)",
				ErrJoin, targets, n.cfg.JoinTimeout)
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
// ctx ends), stops gossip and closes the transport. It is idempotent and
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
		n.mu.Lock()
		if n.flushAt != nil {
			n.flushAt.Stop()
		}
		n.mu.Unlock()
		if cerr := n.ep.Close(); err == nil {
			err = cerr
		}
		n.wg.Wait()
		if n.wal != nil {
			if serr := n.closeStorage(); err == nil {
				err = serr
			}
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
	n.mu.Lock()
	n.members.Beat(n.clk.Now())
	peers := n.members.Peers()
	out := n.eng.Sync(peers)
	if len(peers) > 0 {
		p := peers[randIntN(len(peers))]
		out = append(out, gossip.Outbound{To: p, Msg: &wire.Members{Members: n.members.Wire()}})
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
		if err := n.ep.Send(o.To, payload); err != nil {
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
	now := n.clk.Now()
	var (
		out     []gossip.Outbound
		changed []crdt.Entry
	)
	n.mu.Lock()
	switch m := m.(type) {
	case *wire.Join:
		added := n.members.Merge([]wire.Member{m.Self}, now)
		out = append(out, gossip.Outbound{To: from, Msg: &wire.JoinAck{Members: n.members.Wire()}})
		out = append(out, n.announce(added, from)...)
	case *wire.JoinAck:
		n.members.Merge(m.Members, now)
		select {
		case <-n.joined:
		default:
			close(n.joined)
		}
	case *wire.Members:
		added := n.members.Merge(m.Members, now)
		out = n.announce(added, from)
	default:
		out, changed = n.eng.Handle(from, m)
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
