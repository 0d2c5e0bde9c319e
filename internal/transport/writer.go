package transport

import (
	"bufio"
	"encoding/binary"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// minBackoff and maxBackoff bound the wait between failed connection
	// attempts to one peer.
	minBackoff = 50 * time.Millisecond
	maxBackoff = time.Second
	// maxBatch bounds how many queued messages are written before a flush.
	maxBatch = 256
	// writeBufSize is the outbound write buffer; larger frames bypass it.
	writeBufSize = 64 << 10
	// keepScratch is the largest sealing buffer a writer keeps between frames.
	keepScratch = 1 << 20
)

// peer is one destination address: its queue, drained by its writer.
type peer struct {
	addr string
	// ready holds a token when messages may have been queued since the
	// writer last looked.
	ready chan struct{}
	// reachable holds a token when the peer just connected to us: the
	// network to it works, so a writer backing off after failed dials
	// should try again at once.
	reachable chan struct{}

	mu sync.Mutex
	// msgs are the queued messages, oldest first. The slice grows with use
	// (up to Config.QueueLen), so a destination that is sent little costs
	// little, and goes with the peer when its writer retires.
	msgs [][]byte
}

func newPeer(addr string) *peer {
	return &peer{addr: addr, ready: make(chan struct{}, 1), reachable: make(chan struct{}, 1)}
}

// push queues msg unless limit messages are queued already.
func (p *peer) push(msg []byte, limit int) bool {
	p.mu.Lock()
	if len(p.msgs) >= limit {
		p.mu.Unlock()
		return false
	}
	p.msgs = append(p.msgs, msg)
	p.mu.Unlock()
	select {
	case p.ready <- struct{}{}:
	default:
	}
	return true
}

// take moves up to n of the oldest queued messages to dst.
func (p *peer) take(dst [][]byte, n int) [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	n = min(n, len(p.msgs))
	dst = append(dst, p.msgs[:n]...)
	rest := copy(p.msgs, p.msgs[n:])
	clear(p.msgs[rest:]) // don't pin written payloads
	p.msgs = p.msgs[:rest]
	return dst
}

// drain empties the queue and returns how many messages it held.
func (p *peer) drain() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.msgs)
	p.msgs = nil
	return n
}

// len returns how many messages are queued.
func (p *peer) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.msgs)
}

// outConn is an established outbound connection.
type outConn struct {
	conn net.Conn
	bw   *bufio.Writer
	// seal seals our frames; nil without a key.
	seal *sealer
	// dead is set by the watcher when the acceptor closed the connection
	// (it never writes after the handshake), so the writer redials instead
	// of losing the next message into a dead socket.
	dead atomic.Bool
}

// runWriter owns the connection to one peer: it dials when there is
// something to send, writes queued messages, and after a failure drops the
// connection and backs off before dialing again. When the queue stays empty
// for IdleWriter it closes the connection, retires the peer and exits.
func (t *TCP) runWriter(p *peer) {
	log := t.log.With("peer", p.addr)
	var (
		oc       *outConn
		failures int      // consecutive failures, for backoff
		scratch  []byte   // sealing buffer
		batch    [][]byte // messages taken from the queue
	)
	defer func() {
		if oc != nil {
			t.untrack(oc.conn)
		}
		t.settleDropped(p.drain())
	}()
	for {
		clear(batch)
		if batch = p.take(batch[:0], maxBatch); len(batch) == 0 {
			if !t.awaitMessages(p, log) {
				return
			}
			continue
		}
		if oc != nil && oc.dead.Load() {
			log.Debug("peer closed the connection; reconnecting")
			t.untrack(oc.conn)
			oc = nil
		}
		if oc == nil {
			var err error
			if oc, err = t.connect(p.addr); err != nil {
				if t.isClosed() {
					t.settleDropped(len(batch))
					return
				}
				failures++
				n := len(batch) + p.drain()
				t.settleDropped(n)
				t.logDialError(log, err, failures, n)
				if !t.backoff(p, failures) {
					return
				}
				continue
			}
			if failures > 0 {
				log.Info("connected to peer", "after_failures", failures)
			} else {
				log.Debug("connected to peer")
			}
		}
		bytes, err := t.writeBatch(oc, batch, &scratch)
		n := len(batch)
		if err != nil {
			t.settleDropped(n)
			if t.isClosed() {
				return
			}
			failures++
			log.Warn("write to peer failed; dropping the connection", "err", err, "dropped", n)
			t.untrack(oc.conn)
			oc = nil
			if !t.backoff(p, failures) {
				return
			}
			continue
		}
		failures = 0
		t.stats.framesSent.Add(int64(n))
		t.inflight.Add(-int64(n))
		t.stats.bytesSent.Add(bytes)
	}
}

// awaitMessages waits, with p's queue empty, until something is queued. It
// reports false when the writer should exit: the transport closed, or the
// queue stayed empty for IdleWriter and p has been retired.
func (t *TCP) awaitMessages(p *peer, log *slog.Logger) bool {
	idle := make(chan struct{})
	timer := t.cfg.Clock.AfterFunc(t.cfg.IdleWriter, func() { close(idle) })
	select {
	case <-p.ready:
		timer.Stop()
		return true
	case <-t.done:
		timer.Stop()
		return false
	case <-idle:
		if !t.retire(p) {
			return true // a Send got in first
		}
		log.Debug("no messages for the peer lately; closing its connection", "idle_writer", t.cfg.IdleWriter)
		return false
	}
}

// logDialError logs a failed connection attempt: loudly the first time and
// for refusals that need an operator, quietly while a peer stays down.
func (t *TCP) logDialError(log *slog.Logger, err error, failures, dropped int) {
	switch {
	case errors.Is(err, ErrWrongCluster):
		log.Warn("peer is in another cluster; not sending to it", "err", err, "cluster", t.cfg.Cluster, "dropped", dropped)
	case errors.Is(err, ErrAuth), errors.Is(err, ErrVersion), errors.Is(err, ErrHandshake):
		log.Warn("handshake with peer failed", "err", err, "dropped", dropped)
	case failures == 1:
		log.Warn("cannot reach peer; dropping its queued messages and retrying with backoff", "err", err, "dropped", dropped)
	default:
		log.Debug("still cannot reach peer", "err", err, "failures", failures, "dropped", dropped)
	}
}

// connect dials addr and performs the handshake.
func (t *TCP) connect(addr string) (*outConn, error) {
	t.stats.dials.Add(1)
	d := net.Dialer{Timeout: t.cfg.DialTimeout, Control: tcpUserTimeout(t.cfg.UnackedTimeout)}
	c, err := d.DialContext(t.ctx, "tcp", addr)
	if err != nil {
		t.stats.dialFailures.Add(1)
		return nil, err
	}
	if !t.track(c) {
		t.stats.dialFailures.Add(1)
		return nil, ErrClosed
	}
	seal, err := t.hs.dial(c)
	if err != nil {
		t.stats.dialFailures.Add(1)
		if errors.Is(err, ErrWrongCluster) || errors.Is(err, ErrAuth) || errors.Is(err, ErrVersion) || errors.Is(err, ErrHandshake) {
			t.stats.reject(rejectReasonOf(err))
		}
		t.untrack(c)
		return nil, err
	}
	oc := &outConn{conn: c, bw: bufio.NewWriterSize(c, writeBufSize), seal: seal}
	t.goFunc(func() {
		// The acceptor never writes after its answer: any read result means
		// the connection is finished.
		var b [1]byte
		c.Read(b[:])
		oc.dead.Store(true)
	})
	return oc, nil
}

// writeBatch writes msgs and flushes. It returns their payload bytes.
func (t *TCP) writeBatch(oc *outConn, msgs [][]byte, scratch *[]byte) (bytes int64, err error) {
	for _, msg := range msgs {
		bytes += int64(len(msg))
		if err := t.writeFrame(oc, msg, scratch); err != nil {
			return bytes, err
		}
	}
	if err := oc.conn.SetWriteDeadline(time.Now().Add(t.cfg.WriteTimeout)); err != nil {
		return bytes, err
	}
	return bytes, oc.bw.Flush()
}

// writeFrame writes one message frame into the connection's buffer; large
// frames go straight through to the socket.
func (t *TCP) writeFrame(oc *outConn, payload []byte, scratch *[]byte) error {
	if err := oc.conn.SetWriteDeadline(time.Now().Add(t.cfg.WriteTimeout)); err != nil {
		return err
	}
	if oc.seal != nil {
		frame, err := oc.seal.sealFrame((*scratch)[:0], payload)
		if err != nil {
			return err
		}
		if cap(frame) <= keepScratch {
			*scratch = frame
		} else {
			*scratch = nil
		}
		_, err = oc.bw.Write(frame)
		return err
	}
	var hdr [frameHeaderLen]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(payload)))
	if _, err := oc.bw.Write(hdr[:]); err != nil {
		return err
	}
	_, err := oc.bw.Write(payload)
	return err
}

// isClosed reports whether Close has begun.
func (t *TCP) isClosed() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

// backoff waits, on the injected clock, before the next connection attempt
// after the given number of consecutive failures. It reports false if the
// transport closed meanwhile.
func (t *TCP) backoff(p *peer, failures int) bool {
	d := backoffDelay(failures)
	fired := make(chan struct{})
	timer := t.cfg.Clock.AfterFunc(d, func() { close(fired) })
	select {
	case <-fired:
		return true
	case <-p.reachable:
		timer.Stop()
		return true
	case <-t.done:
		timer.Stop()
		return false
	}
}

// backoffDelay doubles from minBackoff to maxBackoff and keeps a random half
// of it, so that peers that failed together do not retry in lockstep.
func backoffDelay(failures int) time.Duration {
	d := maxBackoff
	if shift := failures - 1; shift < 16 {
		d = min(minBackoff<<max(shift, 0), maxBackoff)
	}
	return d/2 + rand.N(d/2+1)
}
