package transport

import (
	"bufio"
	"encoding/binary"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"time"
)

const (
	// minBackoff and maxBackoff bound the wait between failed connection
	// attempts to one peer.
	minBackoff = 50 * time.Millisecond
	maxBackoff = 5 * time.Second
	// maxBatch bounds how many queued messages are written before a flush.
	maxBatch = 256
	// writeBufSize is the outbound write buffer; larger frames bypass it.
	writeBufSize = 64 << 10
	// keepScratch is the largest sealing buffer a writer keeps between frames.
	keepScratch = 1 << 20
)

// peer is one destination address: its queue, drained by its writer.
type peer struct {
	addr  string
	queue chan []byte
}

// outConn is an established outbound connection.
type outConn struct {
	conn net.Conn
	bw   *bufio.Writer
	// dead is set by the watcher when the acceptor closed the connection
	// (it never writes after the handshake), so the writer redials instead
	// of losing the next message into a dead socket.
	dead atomic.Bool
}

// runWriter owns the connection to one peer: it dials when there is
// something to send, writes queued messages, and after a failure drops the
// connection and backs off before dialing again.
func (t *TCP) runWriter(p *peer) {
	log := t.log.With("peer", p.addr)
	var (
		oc       *outConn
		failures int    // consecutive failures, for backoff
		scratch  []byte // sealing buffer
	)
	defer func() {
		if oc != nil {
			t.untrack(oc.conn)
		}
		t.settleDropped(drain(p.queue))
	}()
	for {
		var msg []byte
		select {
		case <-t.done:
			return
		case msg = <-p.queue:
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
					t.settleDropped(1)
					return
				}
				failures++
				n := 1 + drain(p.queue)
				t.settleDropped(n)
				t.logDialError(log, err, failures, n)
				if !t.backoff(failures) {
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
		n, bytes, err := t.writeBatch(oc, msg, p.queue, &scratch)
		if err != nil {
			if t.isClosed() {
				t.settleDropped(n)
				return
			}
			failures++
			t.settleDropped(n)
			log.Warn("write to peer failed; dropping the connection", "err", err, "dropped", n)
			t.untrack(oc.conn)
			oc = nil
			if !t.backoff(failures) {
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
	d := net.Dialer{Timeout: t.cfg.DialTimeout}
	c, err := d.DialContext(t.ctx, "tcp", addr)
	if err != nil {
		t.stats.dialFailures.Add(1)
		return nil, err
	}
	if !t.track(c) {
		t.stats.dialFailures.Add(1)
		return nil, ErrClosed
	}
	if err := t.dialHandshake(c); err != nil {
		t.stats.dialFailures.Add(1)
		if errors.Is(err, ErrWrongCluster) || errors.Is(err, ErrAuth) || errors.Is(err, ErrVersion) || errors.Is(err, ErrHandshake) {
			t.stats.rejected.Add(1)
		}
		t.untrack(c)
		return nil, err
	}
	oc := &outConn{conn: c, bw: bufio.NewWriterSize(c, writeBufSize)}
	t.goFunc(func() {
		// The acceptor never writes after its answer: any read result means
		// the connection is finished.
		var b [1]byte
		c.Read(b[:])
		oc.dead.Store(true)
	})
	return oc, nil
}

// writeBatch writes msg and then whatever else is queued (up to maxBatch),
// and flushes. It returns how many messages it took and their payload bytes.
func (t *TCP) writeBatch(oc *outConn, msg []byte, queue chan []byte, scratch *[]byte) (n int, bytes int64, err error) {
	for {
		n++
		bytes += int64(len(msg))
		if err := t.writeFrame(oc, msg, scratch); err != nil {
			return n, bytes, err
		}
		if n == maxBatch {
			break
		}
		var ok bool
		if msg, ok = tryRecv(queue); !ok {
			break
		}
	}
	if err := oc.conn.SetWriteDeadline(time.Now().Add(t.cfg.WriteTimeout)); err != nil {
		return n, bytes, err
	}
	return n, bytes, oc.bw.Flush()
}

// writeFrame writes one message frame into the connection's buffer; large
// frames go straight through to the socket.
func (t *TCP) writeFrame(oc *outConn, payload []byte, scratch *[]byte) error {
	if err := oc.conn.SetWriteDeadline(time.Now().Add(t.cfg.WriteTimeout)); err != nil {
		return err
	}
	if t.seal != nil {
		frame := t.seal.sealFrame((*scratch)[:0], payload)
		if cap(frame) <= keepScratch {
			*scratch = frame
		} else {
			*scratch = nil
		}
		_, err := oc.bw.Write(frame)
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
func (t *TCP) backoff(failures int) bool {
	d := backoffDelay(failures)
	fired := make(chan struct{})
	timer := t.cfg.Clock.AfterFunc(d, func() { close(fired) })
	select {
	case <-fired:
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

// tryRecv takes a message from q if one is waiting.
func tryRecv(q chan []byte) ([]byte, bool) {
	select {
	case m := <-q:
		return m, true
	default:
		return nil, false
	}
}

// drain empties q without blocking and returns how many messages it held.
func drain(q chan []byte) int {
	n := 0
	for {
		select {
		case <-q:
			n++
		default:
			return n
		}
	}
}
