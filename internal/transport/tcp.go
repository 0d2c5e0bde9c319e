package transport

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// TCP is the gossip transport over TCP. Create it with Listen.
type TCP struct {
	cfg     Config
	log     *slog.Logger
	handler Handler
	hs      handshaker
	addr    string // advertised address
	ln      net.Listener
	// maxPayload is the largest payload Send accepts.
	maxPayload int

	ctx    context.Context // cancelled by Close; aborts dials
	cancel context.CancelFunc
	done   chan struct{} // closed by Close
	once   sync.Once
	wg     sync.WaitGroup
	// inbound holds a token per inbound connection being served.
	inbound chan struct{}

	mu     sync.Mutex
	closed bool
	peers  map[string]*peer
	conns  map[net.Conn]struct{} // every open connection, closed by Close

	stats counters
	// inflight counts messages accepted by Send and not yet written or dropped.
	inflight atomic.Int64
	// capWarned and peerCapWarned are when the MaxInbound and MaxPeers caps
	// were last logged (unix nanos).
	capWarned, peerCapWarned atomic.Int64
}

type counters struct {
	framesSent, bytesSent, framesReceived, bytesReceived atomic.Int64
	dropped, queueFull, dials, dialFailures              atomic.Int64
	rejected                                             [NumRejectReasons]atomic.Int64
}

func (c *counters) reject(r RejectReason) { c.rejected[r].Add(1) }

// Listen validates cfg, binds cfg.BindAddr and starts accepting
// connections; every message received is passed to h. It returns a running
// transport; Close stops it.
func Listen(cfg Config, h Handler) (*TCP, error) {
	if h == nil {
		return nil, fmt.Errorf("%w: nil handler", ErrConfig)
	}
	t, err := newTCP(cfg, h)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", t.cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("transport: listen: %w", err)
	}
	t.ln = ln
	if t.addr == "" {
		t.addr = ln.Addr().String()
	}
	t.hs.addr = t.addr
	t.log = t.log.With("addr", t.addr)
	t.goFunc(t.acceptLoop)
	if t.cfg.Keys.Empty() {
		t.log.Info("gossip listening without a cluster key: plaintext, unauthenticated", "bind", ln.Addr().String())
	} else {
		// Key IDs, primary first, so a rotation can be followed in the logs.
		t.log.Info("gossip listening; connections authenticated and encrypted with the cluster keys", "bind", ln.Addr().String(), "key_ids", t.cfg.Keys.IDs())
	}
	return t, nil
}

// newTCP builds a transport without a listener.
func newTCP(cfg Config, h Handler) (*TCP, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	t := &TCP{
		cfg:        cfg,
		log:        cfg.Logger,
		handler:    h,
		addr:       cfg.AdvertiseAddr,
		maxPayload: cfg.MaxFrame,
		done:       make(chan struct{}),
		inbound:    make(chan struct{}, cfg.MaxInbound),
		peers:      make(map[string]*peer),
		conns:      make(map[net.Conn]struct{}),
	}
	t.hs = handshaker{cluster: cfg.Cluster, addr: cfg.AdvertiseAddr, keys: cfg.Keys, timeout: cfg.HandshakeTimeout}
	if !cfg.Keys.Empty() {
		t.maxPayload -= sealOverhead
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	return t, nil
}

// Addr returns the advertised address.
func (t *TCP) Addr() string { return t.addr }

// Send queues payload for the peer at address to and returns at once. It
// returns ErrQueueFull when the peer's queue is full, ErrTooManyPeers when
// to is a new destination and MaxPeers others have a queue, ErrFrameTooLarge
// or ErrEmptyFrame for a payload that cannot be framed, ErrBadAddress, or
// ErrClosed. Delivery is best effort: queued messages are dropped if the
// peer cannot be reached. The payload is not copied and never modified.
func (t *TCP) Send(to string, payload []byte) error {
	switch {
	case len(payload) == 0:
		return fmt.Errorf("%w: empty payload", ErrEmptyFrame)
	case len(payload) > t.maxPayload:
		return fmt.Errorf("%w: payload of %d bytes, limit %d", ErrFrameTooLarge, len(payload), t.maxPayload)
	}
	// t.mu is held while the message is queued, so that a writer retiring
	// for idleness (see retire) cannot miss it.
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	p := t.peers[to]
	if p == nil {
		if err := checkAddr(to); err != nil {
			return err
		}
		if len(t.peers) >= t.cfg.MaxPeers {
			t.stats.dropped.Add(1)
			if rateLimit(&t.peerCapWarned) {
				t.log.Warn("too many destinations; dropping messages to new ones", "max_peers", t.cfg.MaxPeers, "peer", to)
			}
			return fmt.Errorf("%w: %d destinations already, not adding %s", ErrTooManyPeers, t.cfg.MaxPeers, to)
		}
		p = newPeer(to)
		t.peers[to] = p
		t.goFunc(func() { t.runWriter(p) })
	}
	t.inflight.Add(1)
	if !p.push(payload, t.cfg.QueueLen) {
		t.inflight.Add(-1)
		t.stats.dropped.Add(1)
		t.stats.queueFull.Add(1)
		return fmt.Errorf("%w: peer %s", ErrQueueFull, to)
	}
	return nil
}

// retire removes p, whose writer found its queue empty for IdleWriter, so
// that the next Send to its address starts afresh. It reports false, leaving
// p in place, if a message was queued meanwhile: Send queues under t.mu, so
// once p is gone from t.peers nothing more can be queued for it.
func (t *TCP) retire(p *peer) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p.len() > 0 {
		return false
	}
	if t.peers[p.addr] == p {
		delete(t.peers, p.addr)
	}
	return true
}

// Close stops accepting, closes every connection, and waits for every
// goroutine the transport started. Queued messages are dropped. It is
// idempotent and safe to call concurrently.
func (t *TCP) Close() error {
	var err error
	t.once.Do(func() {
		t.mu.Lock()
		t.closed = true
		conns := make([]net.Conn, 0, len(t.conns))
		for c := range t.conns {
			conns = append(conns, c)
		}
		t.mu.Unlock()

		t.cancel()
		close(t.done)
		if t.ln != nil {
			if cerr := t.ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
				err = fmt.Errorf("transport: closing listener: %w", cerr)
			}
		}
		for _, c := range conns {
			c.Close()
		}
	})
	t.wg.Wait()
	return err
}

// settleDropped accounts for n queued messages that will never be written.
func (t *TCP) settleDropped(n int) {
	t.stats.dropped.Add(int64(n))
	t.inflight.Add(-int64(n))
}

// Flush waits until every message accepted by Send so far has been written
// to its peer's connection or dropped, or until ctx ends. A node calls it
// before Close so that its last words (a "left" announcement) go out.
func (t *TCP) Flush(ctx context.Context) error {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for t.inflight.Load() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// Stats returns a snapshot of the transport's counters.
func (t *TCP) Stats() Stats {
	s := &t.stats
	st := Stats{
		FramesSent:     s.framesSent.Load(),
		BytesSent:      s.bytesSent.Load(),
		FramesReceived: s.framesReceived.Load(),
		BytesReceived:  s.bytesReceived.Load(),
		Dropped:        s.dropped.Load(),
		QueueFull:      s.queueFull.Load(),
		Dials:          s.dials.Load(),
		DialFailures:   s.dialFailures.Load(),
	}
	for r := range st.RejectedBy {
		st.RejectedBy[r] = s.rejected[r].Load()
		st.Rejected += st.RejectedBy[r]
	}
	return st
}

// goFunc runs f in a goroutine that Close waits for. Callers are either
// goroutines started by goFunc or hold t.mu with t.closed false, so the
// WaitGroup never grows from zero while Close waits.
func (t *TCP) goFunc(f func()) {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		f()
	}()
}

// track registers c to be closed by Close. It reports false, having closed
// c, when the transport is already closed.
func (t *TCP) track(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		c.Close()
		return false
	}
	t.conns[c] = struct{}{}
	return true
}

// untrack closes c and forgets it.
func (t *TCP) untrack(c net.Conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
	c.Close()
}

func (t *TCP) acceptLoop() {
	var delay time.Duration // backoff after accept errors such as EMFILE
	for {
		c, err := t.ln.Accept()
		if err != nil {
			select {
			case <-t.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t.log.Error("accept failed; retrying", "err", err, "retry_in", delay)
			timer := time.NewTimer(delay)
			select {
			case <-timer.C:
			case <-t.done:
				timer.Stop()
				return
			}
			continue
		}
		delay = 0
		select {
		case t.inbound <- struct{}{}:
		default:
			t.stats.reject(RejectTooMany)
			t.warnInboundCap(c.RemoteAddr().String())
			c.Close()
			continue
		}
		if !t.track(c) {
			<-t.inbound
			return
		}
		t.goFunc(func() {
			defer func() { <-t.inbound }()
			defer t.untrack(c)
			t.serveConn(c, c.RemoteAddr().String())
		})
	}
}

// warnInboundCap logs hitting MaxInbound at most once every 10s.
func (t *TCP) warnInboundCap(remote string) {
	if rateLimit(&t.capWarned) {
		t.log.Warn("too many inbound connections; refusing new ones", "max_inbound", t.cfg.MaxInbound, "remote", remote)
	}
}

// rateLimit reports whether a warning last logged at *last may be logged
// again, at most once every 10s, and if so records now. Times are
// nanoseconds on the monotonic clock since the process started (offset by
// the interval, so that the first warning is never held back): a wall-clock
// step cannot silence the warning.
func rateLimit(last *atomic.Int64) bool {
	now := int64(time.Since(processStart) + 10*time.Second)
	prev := last.Load()
	return now-prev >= int64(10*time.Second) && last.CompareAndSwap(prev, now)
}

// processStart anchors rateLimit's monotonic readings.
var processStart = time.Now()

// inboundConn is what serving an inbound connection needs; net.Conn has it.
type inboundConn interface {
	handshakeConn
	SetReadDeadline(t time.Time) error
}

// serveConn runs one inbound connection: handshake, then frames to the
// Handler until the connection fails or closes. It never writes after the
// answer. The caller closes c.
func (t *TCP) serveConn(c inboundConn, remote string) {
	log := t.log.With("remote", remote)
	if err := c.SetDeadline(time.Now().Add(t.cfg.HandshakeTimeout)); err != nil {
		return
	}
	h, open, err := t.hs.accept(c)
	if err != nil {
		var he *handshakeError
		if !errors.As(err, &he) {
			he = &handshakeError{err: err, code: codeBadHello}
		}
		if he.quiet {
			// Port scanners and health checks: not worth a warning, and a
			// connection that simply went away is not a rejection.
			log.Debug("inbound connection did not complete the handshake", "err", err)
			if !errors.Is(err, io.EOF) {
				t.stats.reject(rejectReasonOf(err))
			}
			return
		}
		t.stats.reject(rejectReasonOf(err))
		if h.addr != "" {
			log = log.With("peer", h.addr)
		}
		switch {
		case errors.Is(err, ErrWrongCluster):
			log.Warn("refused a peer from another cluster", "peer_cluster", h.cluster, "cluster", t.cfg.Cluster)
		case errors.Is(err, ErrAuth) && !t.cfg.Keys.Empty():
			log.Warn("refused an inbound connection", "err", err, "key_ids", t.cfg.Keys.IDs())
		default:
			log.Warn("refused an inbound connection", "err", err)
		}
		if werr := t.hs.writeAnswer(c, answer{code: he.code, reason: reasonText(he.err)}, he.seal); werr != nil {
			log.Debug("could not send the refusal", "err", werr)
		}
		return
	}
	if err := c.SetDeadline(time.Time{}); err != nil {
		return
	}
	log = log.With("peer", h.addr)
	log.Debug("inbound connection from peer")
	t.peerReachable(h.addr)

	fr := frameReader{r: bufio.NewReaderSize(c, 16<<10), max: t.cfg.MaxFrame, seal: open}
	for {
		if err := c.SetReadDeadline(time.Now().Add(t.cfg.IdleTimeout)); err != nil {
			return
		}
		payload, err := fr.next()
		if err != nil {
			t.logReadError(log, err, fr.hdr[:])
			return
		}
		t.stats.framesReceived.Add(1)
		t.stats.bytesReceived.Add(int64(len(payload)))
		t.handler(h.addr, payload)
	}
}

// peerReachable cuts short the dial backoff of the writer to addr, if any:
// addr just connected to us, so the network between us works again.
func (t *TCP) peerReachable(addr string) {
	t.mu.Lock()
	p := t.peers[addr]
	t.mu.Unlock()
	if p != nil {
		select {
		case p.reachable <- struct{}{}:
		default:
		}
	}
}

// logReadError logs why an inbound connection ended after its handshake,
// and counts the peer's protocol violations as rejections.
func (t *TCP) logReadError(log *slog.Logger, err error, hdr []byte) {
	switch {
	case errors.Is(err, ErrFrameTooLarge):
		t.stats.reject(RejectFrameTooLarge)
		log.Error("oversized frame; closing the connection", "length", binary.BigEndian.Uint32(hdr), "max_frame", t.cfg.MaxFrame)
	case errors.Is(err, ErrAuth):
		t.stats.reject(RejectAuth)
		log.Warn("frame failed authentication; closing the connection", "err", err)
	case errors.Is(err, ErrEmptyFrame):
		t.stats.reject(RejectEmptyFrame)
		log.Warn("empty frame; closing the connection")
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		log.Debug("inbound connection closed")
	case isTimeout(err):
		log.Debug("inbound connection idle; closing it", "idle_timeout", t.cfg.IdleTimeout)
	default:
		log.Debug("inbound connection failed", "err", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
