package transport

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/clusterkey"
	"github.com/dcounter/dcounter/internal/clusterkey/clusterkeytest"
	"github.com/dcounter/dcounter/internal/testutil"
)

// waitFor polls until cond holds (testutil.WaitFor).
var waitFor = testutil.WaitFor

// logRecorder is a slog.Handler that sends records to t.Log and keeps them
// for assertions.
type logRecorder struct {
	t     testing.TB
	attrs string
	mu    *sync.Mutex
	lines *[]string
}

func newLogger(t testing.TB) (*slog.Logger, *logRecorder) {
	r := &logRecorder{t: t, mu: new(sync.Mutex), lines: new([]string)}
	return slog.New(r), r
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s%s", rec.Level, rec.Message, r.attrs)
	rec.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%q", a.Key, a.Value.String())
		return true
	})
	line := b.String()
	r.mu.Lock()
	*r.lines = append(*r.lines, line)
	r.mu.Unlock()
	r.t.Log(line)
	return nil
}

func (r *logRecorder) WithAttrs(as []slog.Attr) slog.Handler {
	c := *r
	for _, a := range as {
		c.attrs += fmt.Sprintf(" %s=%q", a.Key, a.Value.String())
	}
	return &c
}

func (r *logRecorder) WithGroup(string) slog.Handler { return r }

// has reports whether some record at level or above contains every one of subs.
func (r *logRecorder) has(level slog.Level, subs ...string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
next:
	for _, l := range *r.lines {
		lv, _, _ := strings.Cut(l, " ")
		var got slog.Level
		if got.UnmarshalText([]byte(lv)) != nil || got < level {
			continue
		}
		for _, s := range subs {
			if !strings.Contains(l, s) {
				continue next
			}
		}
		return true
	}
	return false
}

// inbox collects delivered messages.
type inbox struct {
	mu   sync.Mutex
	msgs []received
}

type received struct {
	from    string
	payload []byte
}

func (b *inbox) handle(from string, p []byte) {
	b.mu.Lock()
	b.msgs = append(b.msgs, received{from, bytes.Clone(p)})
	b.mu.Unlock()
}

func (b *inbox) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.msgs)
}

func (b *inbox) get() []received {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]received(nil), b.msgs...)
}

// node is a TCP transport under test with its inbox and log.
type node struct {
	*TCP
	in  *inbox
	log *logRecorder
}

// listen starts a transport on 127.0.0.1:0, cluster "test" unless set, and
// closes it when the test ends.
func listen(t testing.TB, cfg Config) *node {
	t.Helper()
	if cfg.BindAddr == "" {
		cfg.BindAddr = "127.0.0.1:0"
	}
	if cfg.Cluster == "" {
		cfg.Cluster = "test"
	}
	var rec *logRecorder
	if cfg.Logger == nil {
		cfg.Logger, rec = newLogger(t)
	}
	in := &inbox{}
	tr, err := Listen(cfg, in.handle)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() { tr.Close() })
	return &node{TCP: tr, in: in, log: rec}
}

// pattern returns n bytes that differ with seed, so misplaced or mixed-up
// bytes are caught.
func pattern(seed, n int) []byte {
	b := make([]byte, n)
	x := uint32(seed)*2654435761 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// rawPeer is a hand-driven dialer for feeding a transport exact bytes.
type rawPeer struct {
	t    testing.TB
	conn net.Conn
	keys clusterkey.Keyring
	seal *sealer // set by handshake when keyed
}

// dialRaw connects to addr without a handshake.
func dialRaw(t testing.TB, addr string, keys clusterkey.Keyring) *rawPeer {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawPeer{t: t, conn: c, keys: keys}
}

// frame builds the next frame for payload, sealed if the handshake was keyed.
func (p *rawPeer) frame(payload []byte) []byte {
	if p.seal != nil {
		f, err := p.seal.sealFrame(nil, payload)
		if err != nil {
			p.t.Fatal(err)
		}
		return f
	}
	return appendFrame(nil, payload)
}

func (p *rawPeer) write(b []byte) {
	p.t.Helper()
	if _, err := p.conn.Write(b); err != nil {
		p.t.Fatalf("write: %v", err)
	}
}

// oneByteWriter writes each byte in its own call, so the peer reads the
// handshake in as many pieces.
type oneByteWriter struct{ net.Conn }

func (w oneByteWriter) Write(b []byte) (int, error) {
	for i := range b {
		if _, err := w.Conn.Write(b[i : i+1]); err != nil {
			return i, err
		}
	}
	return len(b), nil
}

// handshake runs the dialer's handshake (writing byte by byte when split)
// and expects to be accepted.
func (p *rawPeer) handshake(cluster, from string, split bool) {
	p.t.Helper()
	var c handshakeConn = p.conn
	if split {
		c = oneByteWriter{p.conn}
	}
	hs := handshaker{cluster: cluster, addr: from, keys: p.keys, timeout: 5 * time.Second}
	seal, err := hs.dial(c)
	if err != nil {
		p.t.Fatalf("handshake: %v", err)
	}
	p.seal = seal
}

// fixedRand is an endless stream of one byte value: deterministic
// ephemeral keys for golden tests.
type fixedRand byte

func (r fixedRand) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = byte(r)
	}
	return len(b), nil
}

// sessionPair returns the two ends of one direction of a keyed session:
// what the dialer seals with and what the acceptor opens with.
func sessionPair(t testing.TB, key byte) (seal, open *sealer) {
	t.Helper()
	psk := clusterkeytest.Key(key)
	i, err := newHandshakeState(true, psk, nil, fixedRand(1))
	if err != nil {
		t.Fatal(err)
	}
	r, err := newHandshakeState(false, psk, nil, fixedRand(2))
	if err != nil {
		t.Fatal(err)
	}
	msg1, _, _, err := i.WriteMessage(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := r.ReadMessage(nil, msg1); err != nil {
		t.Fatal(err)
	}
	msg2, rIn, _, err := r.WriteMessage(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, iOut, _, err := i.ReadMessage(nil, msg2)
	if err != nil {
		t.Fatal(err)
	}
	return &sealer{cs: iOut}, &sealer{cs: rIn}
}

// expectClosed checks that the transport closes the connection (rather
// than the read timing out), discarding anything it sends first.
func (p *rawPeer) expectClosed() {
	p.t.Helper()
	p.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, p.conn)
	if isTimeout(err) {
		p.t.Fatalf("connection still open: %v", err)
	}
}
