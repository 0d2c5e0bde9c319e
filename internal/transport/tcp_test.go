package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/clock"
	"github.com/dcounter/dcounter/internal/clusterkey"
	"github.com/dcounter/dcounter/internal/clusterkey/clusterkeytest"
)

func TestExchangeBothWays(t *testing.T) {
	for _, tc := range []struct {
		name string
		keys clusterkey.Keyring
	}{{"plaintext", clusterkey.Keyring{}}, {"sealed", clusterkeytest.Ring(t, 1)}} {
		t.Run(tc.name, func(t *testing.T) {
			a := listen(t, Config{Keys: tc.keys})
			b := listen(t, Config{Keys: tc.keys})

			sizes := []int{1, 16<<10 + 1, 1 << 20, 20 << 20}
			for i := range 200 {
				sizes = append(sizes, 1+i*97)
			}
			var want [][]byte
			for i, n := range sizes {
				want = append(want, pattern(i, n))
			}
			var wg sync.WaitGroup
			for _, pair := range [][2]*node{{a, b}, {b, a}} {
				from, to := pair[0], pair[1]
				wg.Add(1)
				go func() {
					defer wg.Done()
					for _, p := range want {
						if err := from.Send(to.Addr(), p); err != nil {
							t.Errorf("Send: %v", err)
						}
					}
				}()
			}
			wg.Wait()
			for _, n := range []*node{a, b} {
				waitFor(t, "all messages", func() bool { return n.in.len() >= len(want) })
			}
			for _, pair := range [][2]*node{{a, b}, {b, a}} {
				from, to := pair[0], pair[1]
				got := to.in.get()
				if len(got) != len(want) {
					t.Fatalf("%s got %d messages, want %d", to.Addr(), len(got), len(want))
				}
				for i, m := range got {
					if m.from != from.Addr() {
						t.Fatalf("message %d from %q, want %q", i, m.from, from.Addr())
					}
					if !bytes.Equal(m.payload, want[i]) {
						t.Fatalf("message %d: %d bytes differ from the %d sent", i, len(m.payload), len(want[i]))
					}
				}
				s := from.Stats()
				if s.FramesSent != int64(len(want)) || s.Dropped != 0 || s.Rejected != 0 {
					t.Errorf("sender stats %+v", s)
				}
				if r := to.Stats(); r.FramesReceived != int64(len(want)) || r.BytesReceived != s.BytesSent {
					t.Errorf("receiver stats %+v, sender %+v", r, s)
				}
			}
		})
	}
}

func TestSplitAndCoalescedFrames(t *testing.T) {
	for _, tc := range []struct {
		name string
		keys clusterkey.Keyring
	}{{"plaintext", clusterkey.Keyring{}}, {"sealed", clusterkeytest.Ring(t, 2)}} {
		t.Run(tc.name, func(t *testing.T) {
			b := listen(t, Config{Keys: tc.keys})
			p := dialRaw(t, b.Addr(), tc.keys)
			p.handshake("test", "10.0.0.1:7946", true)

			msgs := [][]byte{pattern(1, 300), pattern(2, 1), pattern(3, 5000)}
			split := p.frame(msgs[0])
			for i := range split {
				p.write(split[i : i+1])
			}
			p.write(append(p.frame(msgs[1]), p.frame(msgs[2])...))

			waitFor(t, "three messages", func() bool { return b.in.len() >= 3 })
			for i, m := range b.in.get() {
				if m.from != "10.0.0.1:7946" || !bytes.Equal(m.payload, msgs[i]) {
					t.Errorf("message %d from %q (%d bytes) differs", i, m.from, len(m.payload))
				}
			}
		})
	}
}

func TestBadInboundInputIsRejected(t *testing.T) {
	const small = 1024
	garbage := pattern(99, 4096)
	smallLen := func(n uint32, body []byte) []byte {
		return append(binary.BigEndian.AppendUint32(nil, n), body...)
	}
	cases := []struct {
		name      string
		maxFrame  int
		handshake bool
		send      []byte
		rejected  bool
		reason    RejectReason
	}{
		{"huge length after handshake", 0, true, []byte{0xff, 0xff, 0xff, 0xff}, true, RejectFrameTooLarge},
		{"MaxFrame+1 after handshake", 0, true, smallLen(DefaultMaxFrame+1, nil), true, RejectFrameTooLarge},
		{"small MaxFrame+1 after handshake", small, true, smallLen(small+1, make([]byte, small+1)), true, RejectFrameTooLarge},
		{"huge length with small MaxFrame", small, true, []byte{0xff, 0xff, 0xff, 0xff}, true, RejectFrameTooLarge},
		{"zero length after handshake", 0, true, []byte{0, 0, 0, 0}, true, RejectEmptyFrame},
		{"huge length instead of hello", 0, false, []byte{0xff, 0xff, 0xff, 0xff}, true, RejectHandshake},
		{"random garbage", 0, false, garbage, true, RejectHandshake},
		{"garbage in a small frame", 0, false, smallLen(16, garbage[:16]), true, RejectHandshake},
		{"http request", 0, false, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), true, RejectHandshake},
		{"truncated hello", 0, false, smallLen(40, []byte("DCNT\x01")), true, RejectHandshake},
		{"truncated frame after handshake", 0, true, smallLen(100, make([]byte, 50)), false, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := listen(t, Config{MaxFrame: tc.maxFrame})
			p := dialRaw(t, b.Addr(), clusterkey.Keyring{})
			if tc.handshake {
				p.handshake("test", "10.0.0.2:1", false)
			}
			p.write(tc.send)
			if tc.name == "truncated hello" || tc.name == "truncated frame after handshake" {
				p.conn.(*net.TCPConn).CloseWrite()
			}
			p.expectClosed()
			if tc.rejected {
				waitFor(t, "rejection counted", func() bool { return b.Stats().Rejected == 1 })
				if got := b.Stats().RejectedBy[tc.reason]; got != 1 {
					t.Errorf("rejections for reason %s: %d, want 1 (by reason: %v)", tc.reason, got, b.Stats().RejectedBy)
				}
			}
			if tc.maxFrame == small && !b.log.has(slog.LevelError, "oversized frame", "length=", "remote=") {
				t.Errorf("no error logged naming the length and remote address")
			}

			// The transport still serves a proper peer.
			a := listen(t, Config{})
			if err := a.Send(b.Addr(), []byte("still alive")); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "delivery after bad input", func() bool { return b.in.len() == 1 })
			if got := b.in.get()[0]; string(got.payload) != "still alive" || got.from != a.Addr() {
				t.Errorf("got %q from %q", got.payload, got.from)
			}
		})
	}
}

func TestFrameOfExactlyMaxFrameIsDelivered(t *testing.T) {
	const small = 1024
	b := listen(t, Config{MaxFrame: small})
	a := listen(t, Config{MaxFrame: small})
	if err := a.Send(b.Addr(), make([]byte, small+1)); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("Send of MaxFrame+1 bytes: %v, want ErrFrameTooLarge", err)
	}
	want := pattern(7, small)
	if err := a.Send(b.Addr(), want); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivery", func() bool { return b.in.len() == 1 })
	if !bytes.Equal(b.in.get()[0].payload, want) {
		t.Error("payload differs")
	}
}

func TestSilentConnectionTimesOut(t *testing.T) {
	b := listen(t, Config{HandshakeTimeout: 100 * time.Millisecond})
	p := dialRaw(t, b.Addr(), clusterkey.Keyring{})
	p.expectClosed()
	waitFor(t, "rejection counted", func() bool { return b.Stats().Rejected == 1 })
}

func TestWrongCluster(t *testing.T) {
	a := listen(t, Config{Cluster: "alpha"})
	b := listen(t, Config{Cluster: "beta"})
	if err := a.Send(b.Addr(), []byte("hello")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both sides to reject", func() bool {
		return a.Stats().Rejected >= 1 && b.Stats().Rejected >= 1
	})
	for _, tr := range []*TCP{a.TCP, b.TCP} {
		if s := tr.Stats(); s.RejectedBy[RejectWrongCluster] != s.Rejected {
			t.Errorf("rejections by reason %v, want all %d as %s", s.RejectedBy, s.Rejected, RejectWrongCluster)
		}
	}
	if n := b.in.len(); n != 0 {
		t.Errorf("%d messages delivered across clusters", n)
	}
	// Each side counts the rejection before it logs it, and the dialer
	// drops its queue after that.
	waitFor(t, "acceptor warning naming the dialer's cluster", func() bool { return b.log.has(slog.LevelWarn, "another cluster", `"alpha"`) })
	waitFor(t, "dialer warning naming the acceptor's cluster", func() bool { return a.log.has(slog.LevelWarn, "another cluster", `\"beta\"`) })
	waitFor(t, "dialer to drop its message", func() bool { return a.Stats().Dropped == 1 })
	if s := a.Stats(); s.Dropped != 1 || s.DialFailures < 1 {
		t.Errorf("dialer stats %+v", s)
	}
}

func TestKeys(t *testing.T) {
	cases := []struct {
		name       string
		keyA, keyB clusterkey.Keyring
		deliver    bool
		logA, logB string // expected in each side's warnings
	}{
		{"no key to key", clusterkey.Keyring{}, clusterkeytest.Ring(t, 1), false, "requires the cluster key", "requires the cluster key"},
		{"key to no key", clusterkeytest.Ring(t, 1), clusterkey.Keyring{}, false, "the accepting node has none", "the accepting node has none"},
		{"different keys", clusterkeytest.Ring(t, 1), clusterkeytest.Ring(t, 2), false, "not in the accepting node's keyring", "not in the accepting node's keyring"},
		{"same key", clusterkeytest.Ring(t, 3), clusterkeytest.Ring(t, 3), true, "", ""},
		{"dialer's primary is the acceptor's second key", clusterkeytest.Ring(t, 4, 5), clusterkeytest.Ring(t, 5, 4), true, "", ""},
		{"dialer's primary is the acceptor's only key", clusterkeytest.Ring(t, 4, 5), clusterkeytest.Ring(t, 4), true, "", ""},
		{"dialer's second key is the acceptor's only key", clusterkeytest.Ring(t, 4, 5), clusterkeytest.Ring(t, 5), false, "not in the accepting node's keyring", "not in the accepting node's keyring"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := listen(t, Config{Keys: tc.keyA})
			b := listen(t, Config{Keys: tc.keyB})
			if err := a.Send(b.Addr(), []byte("secret")); err != nil {
				t.Fatal(err)
			}
			if tc.deliver {
				waitFor(t, "delivery", func() bool { return b.in.len() == 1 })
				if got := b.in.get()[0]; string(got.payload) != "secret" || got.from != a.Addr() {
					t.Errorf("got %q from %s", got.payload, got.from)
				}
				return
			}
			waitFor(t, "both sides to reject", func() bool {
				return a.Stats().Rejected >= 1 && b.Stats().Rejected >= 1
			})
			if n := b.in.len(); n != 0 {
				t.Errorf("%d messages delivered", n)
			}
			// Each side counts the rejection before it logs it.
			waitFor(t, "dialer log naming "+tc.logA, func() bool { return a.log.has(slog.LevelWarn, tc.logA) })
			waitFor(t, "acceptor log naming "+tc.logB, func() bool { return b.log.has(slog.LevelWarn, tc.logB) })
		})
	}
}

func TestForgedSealedFramesAreRejected(t *testing.T) {
	keys := clusterkeytest.Ring(t, 4)
	cases := []struct {
		name   string
		tamper func(p *rawPeer, frame []byte) []byte
	}{
		{"flipped ciphertext bit", func(_ *rawPeer, f []byte) []byte { f[frameHeaderLen+1] ^= 0x01; return f }},
		{"flipped tag bit", func(_ *rawPeer, f []byte) []byte { f[len(f)-1] ^= 0x80; return f }},
		{"shortened frame", func(_ *rawPeer, f []byte) []byte {
			binary.BigEndian.PutUint32(f, binary.BigEndian.Uint32(f)-1)
			return f[:len(f)-1]
		}},
		{"replayed frame", func(p *rawPeer, f []byte) []byte { return append(bytes.Clone(f), f...) }},
		{"frames swapped", func(p *rawPeer, f []byte) []byte { return append(p.frame([]byte("later")), f...) }},
		{"frame of another connection", func(*rawPeer, []byte) []byte {
			seal, _ := sessionPair(t, 4)
			f, _ := seal.sealFrame(nil, []byte("forged"))
			return f
		}},
		{"plaintext frame", func(*rawPeer, []byte) []byte { return appendFrame(nil, []byte("not sealed at all, but long enough")) }},
		{"shorter than the tag", func(*rawPeer, []byte) []byte { return appendFrame(nil, []byte("tiny")) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := listen(t, Config{Keys: keys})
			p := dialRaw(t, b.Addr(), keys)
			p.handshake("test", "10.0.0.3:1", false)
			p.write(p.frame([]byte("genuine")))
			p.write(tc.tamper(p, p.frame([]byte("forged payload"))))
			p.expectClosed()
			waitFor(t, "rejection counted", func() bool { return b.Stats().Rejected == 1 })
			got := b.in.get()
			if len(got) > 2 || string(got[0].payload) != "genuine" || (len(got) == 2 && string(got[1].payload) != "forged payload") {
				t.Errorf("delivered %v, want the genuine frame (and, replayed, the untampered one once)", got)
			}
			if !b.log.has(slog.LevelWarn, "authentication") {
				t.Error("no warning logged")
			}
		})
	}
}

// blackhole accepts connections and never reads or answers; with answer
// set it completes the handshake first and then stops reading.
func blackhole(t *testing.T, answerOK bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			if answerOK {
				fr := frameReader{r: c, max: maxHandshakeFrame}
				if _, err := fr.readBody(); err == nil {
					c.Write(appendFrame(nil, appendAnswer(nil, answer{code: codeOK, cluster: "test"})))
				}
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

func TestDeadPeersDoNotStallOthers(t *testing.T) {
	closedLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := closedLn.Addr().String()
	closedLn.Close()
	dead := map[string]string{
		"refused":  refused,
		"silent":   blackhole(t, false),
		"unread":   blackhole(t, true),
		"unrouted": "192.0.2.1:7946", // TEST-NET-1: the dial hangs or fails
	}

	// A fake clock keeps every backoff pending, so dead peers stay dead.
	clk := clock.NewFake(time.Unix(0, 0))
	a := listen(t, Config{QueueLen: 8, Clock: clk, HandshakeTimeout: time.Minute, WriteTimeout: time.Minute})
	b := listen(t, Config{})

	big := make([]byte, 1<<20)
	for name, addr := range dead {
		waitFor(t, name+" queue to fill", func() bool {
			err := a.Send(addr, big)
			if err != nil && !errors.Is(err, ErrQueueFull) {
				t.Fatalf("Send to %s: %v", name, err)
			}
			return errors.Is(err, ErrQueueFull)
		})
	}
	// The live peer's queue is short too: send at the pace it drains.
	for i := range 100 {
		waitFor(t, "room in the live peer's queue", func() bool {
			err := a.Send(b.Addr(), pattern(i, 100))
			if err != nil && !errors.Is(err, ErrQueueFull) {
				t.Fatalf("Send to live peer: %v", err)
			}
			return err == nil
		})
	}
	waitFor(t, "live peer to receive everything", func() bool { return b.in.len() == 100 })
	if s := a.Stats(); s.QueueFull < int64(len(dead)) || s.Dropped < s.QueueFull {
		t.Errorf("stats %+v", s)
	}

	closed := make(chan struct{})
	go func() {
		a.Close()
		close(closed)
	}()
	waitFor(t, "Close with stuck peers", func() bool {
		select {
		case <-closed:
			return true
		default:
			return false
		}
	})
}

func TestReconnectAfterPeerRestart(t *testing.T) {
	a := listen(t, Config{})
	b := listen(t, Config{})
	addr := b.Addr()
	if err := a.Send(addr, []byte("before")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first delivery", func() bool { return b.in.len() == 1 })
	b.Close()

	b2 := listen(t, Config{BindAddr: addr})
	waitFor(t, "delivery after restart", func() bool {
		a.Send(addr, []byte("after"))
		return b2.in.len() > 0
	})
	if got := b2.in.get()[0]; string(got.payload) != "after" || got.from != a.Addr() {
		t.Errorf("got %q from %q", got.payload, got.from)
	}
	if s := a.Stats(); s.Dials < 2 {
		t.Errorf("stats %+v, want at least two dials", s)
	}
}

func TestCloseStopsEverything(t *testing.T) {
	before := runtime.NumGoroutine()
	a := listen(t, Config{})
	b := listen(t, Config{})
	for i := range 10 {
		a.Send(b.Addr(), pattern(i, 10))
		b.Send(a.Addr(), pattern(i, 10))
	}
	a.Send("127.0.0.1:1", []byte("nobody")) // a writer in backoff
	waitFor(t, "deliveries", func() bool { return a.in.len() == 10 && b.in.len() == 10 })
	p := dialRaw(t, a.Addr(), clusterkey.Keyring{}) // an inbound connection waiting for its hello

	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}()
	}
	wg.Wait()
	if err := a.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	b.Close()
	p.expectClosed()
	p.conn.Close()
	if err := a.Send(b.Addr(), []byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after Close: %v, want ErrClosed", err)
	}
	waitFor(t, "goroutines to exit", func() bool { return runtime.NumGoroutine() <= before })
}

func TestSendValidation(t *testing.T) {
	a := listen(t, Config{Keys: clusterkeytest.Ring(t, 6), MaxFrame: 1024})
	for _, tc := range []struct {
		to      string
		payload []byte
		want    error
	}{
		{"127.0.0.1:1", nil, ErrEmptyFrame},
		{"127.0.0.1:1", make([]byte, 1024-sealOverhead+1), ErrFrameTooLarge},
		{"no port", []byte("x"), ErrBadAddress},
		{"", []byte("x"), ErrBadAddress},
	} {
		if err := a.Send(tc.to, tc.payload); !errors.Is(err, tc.want) {
			t.Errorf("Send(%q, %d bytes) = %v, want %v", tc.to, len(tc.payload), err, tc.want)
		}
	}
	if err := a.Send("127.0.0.1:1", make([]byte, 1024-sealOverhead)); err != nil {
		t.Errorf("Send of the largest sealed payload: %v", err)
	}
}

func TestConfigValidation(t *testing.T) {
	h := func(string, []byte) {}
	for _, cfg := range []Config{
		{BindAddr: "127.0.0.1:0"},
		{BindAddr: "127.0.0.1:0", Cluster: string(make([]byte, MaxClusterLen+1))},
		{BindAddr: "127.0.0.1:0", Cluster: "c", MaxFrame: 10},
		{BindAddr: "127.0.0.1:0", Cluster: "c", QueueLen: -1},
		{BindAddr: "127.0.0.1:0", Cluster: "c", DialTimeout: -time.Second},
		{BindAddr: "127.0.0.1:0", Cluster: "c", MaxPeers: -1},
		{BindAddr: "127.0.0.1:0", Cluster: "c", IdleWriter: -time.Second},
		{BindAddr: "127.0.0.1:0", Cluster: "c", AdvertiseAddr: "no-port"},
	} {
		if tr, err := Listen(cfg, h); !errors.Is(err, ErrConfig) {
			t.Errorf("Listen(%+v) = %v, want ErrConfig", cfg, err)
			if tr != nil {
				tr.Close()
			}
		}
	}
	if _, err := Listen(Config{BindAddr: "127.0.0.1:0", Cluster: "c"}, nil); !errors.Is(err, ErrConfig) {
		t.Errorf("nil handler: %v", err)
	}
}

func TestAdvertiseAddrIsSentInHandshake(t *testing.T) {
	a := listen(t, Config{AdvertiseAddr: "node-a.example:7946"})
	b := listen(t, Config{})
	if a.Addr() != "node-a.example:7946" {
		t.Errorf("Addr() = %q", a.Addr())
	}
	a.Send(b.Addr(), []byte("hi"))
	waitFor(t, "delivery", func() bool { return b.in.len() == 1 })
	if from := b.in.get()[0].from; from != "node-a.example:7946" {
		t.Errorf("from = %q", from)
	}
}

func TestBackoffDelay(t *testing.T) {
	for failures, want := range map[int]time.Duration{1: minBackoff, 2: 2 * minBackoff, 3: 4 * minBackoff, 8: maxBackoff, 1000: maxBackoff} {
		for range 100 {
			d := backoffDelay(failures)
			if d < want/2 || d > want {
				t.Fatalf("backoffDelay(%d) = %v, want in [%v, %v]", failures, d, want/2, want)
			}
		}
	}
	seen := map[time.Duration]bool{}
	for range 20 {
		seen[backoffDelay(5)] = true
	}
	if len(seen) < 2 {
		t.Error("backoff has no jitter")
	}
}

func TestFlushWaitsForQueuedMessages(t *testing.T) {
	got := make(chan []byte, 100)
	b, err := Listen(Config{BindAddr: "127.0.0.1:0", Cluster: "c"}, func(_ string, p []byte) { got <- append([]byte(nil), p...) })
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	a, err := Listen(Config{BindAddr: "127.0.0.1:0", Cluster: "c"}, func(string, []byte) {})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		if err := a.Send(b.Addr(), []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if s := a.Stats(); s.FramesSent != 50 {
		t.Fatalf("after Flush %d frames written, want 50", s.FramesSent)
	}
	a.Close()
	for i := 0; i < 50; i++ {
		select {
		case <-got:
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d of 50 flushed messages arrived", i)
		}
	}
	// A dead peer's messages count as settled once dropped.
	c, err := Listen(Config{BindAddr: "127.0.0.1:0", Cluster: "c"}, func(string, []byte) {})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Send("127.0.0.1:1", []byte("x"))
	if err := c.Flush(ctx); err != nil {
		t.Fatalf("Flush with a message to a dead peer: %v", err)
	}
}
