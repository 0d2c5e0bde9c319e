package discoveryclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/clock"
)

// clientTimeout bounds each request; no test waits on it, because a down
// server refuses connections at once.
const clientTimeout = 5 * time.Second

// downURL returns the URL of a discovery server that is not running.
func downURL(t testing.TB) string {
	t.Helper()
	hs := httptest.NewServer(http.NotFoundHandler())
	u := hs.URL
	hs.Close()
	return u
}

// swapHandler serves whichever Server it currently holds, so a test can
// restart the server behind an unchanged URL. It records the requests it
// sees.
type swapHandler struct {
	cur atomic.Pointer[Server]

	mu   sync.Mutex
	seen []string
}

func (h *swapHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.seen = append(h.seen, r.Method+" "+r.URL.Path)
	h.mu.Unlock()
	h.cur.Load().ServeHTTP(w, r)
}

// requests returns and forgets the requests seen so far.
func (h *swapHandler) requests() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.seen
	h.seen = nil
	return s
}

func TestClientRegisterSkipsDownServer(t *testing.T) {
	clk := clock.NewFake(t0)
	live := startServer(t, clk, serverConfig{})
	self := testEntry(1)
	for _, urls := range [][]string{{downURL(t), live.hs.URL}, {live.hs.URL, downURL(t)}} {
		c := newClient(urls, self)
		if err := c.Register(context.Background()); err != nil {
			t.Fatalf("Register with %v: %v", urls, err)
		}
		wantEntries(t, live.peers(), seenAt(self, clk.Now()))

		clk.Advance(time.Second)
		if err := c.Heartbeat(context.Background()); err != nil {
			t.Fatalf("Heartbeat with %v: %v", urls, err)
		}
		wantEntries(t, live.peers(), seenAt(self, clk.Now()))
	}
}

func TestClientHeartbeatRegistersAgainAfterServerRestart(t *testing.T) {
	clk := clock.NewFake(t0)
	h := &swapHandler{}
	h.cur.Store(newServer(t, clk, serverConfig{}))
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)

	self := testEntry(1)
	c := newClient([]string{downURL(t), hs.URL}, self)
	if err := c.Register(context.Background()); err != nil {
		t.Fatalf("Register: %v", err)
	}

	// The server restarts empty behind the same URL.
	restarted := newServer(t, clk, serverConfig{})
	h.cur.Swap(restarted).Close()
	h.requests()

	clk.Advance(time.Second)
	if err := c.Heartbeat(context.Background()); err != nil {
		t.Fatalf("Heartbeat after the restart: %v", err)
	}
	if got, want := h.requests(), []string{"POST /heartbeat", "POST /register"}; !slices.Equal(got, want) {
		t.Fatalf("requests %q, want %q", got, want)
	}
	wantEntries(t, restarted.Peers(), seenAt(self, t0.Add(time.Second)))

	// Known again: a heartbeat is enough.
	clk.Advance(time.Second)
	if err := c.Heartbeat(context.Background()); err != nil {
		t.Fatalf("Heartbeat: %v", err)
	}
	if got, want := h.requests(), []string{"POST /heartbeat"}; !slices.Equal(got, want) {
		t.Fatalf("requests %q, want %q", got, want)
	}
	wantEntries(t, restarted.Peers(), seenAt(self, t0.Add(2*time.Second)))
}

func TestClientPeersIsUnionWithoutSelfOrDuplicates(t *testing.T) {
	clk := clock.NewFake(t0)
	a := startServer(t, clk, serverConfig{})
	b := startServer(t, clk, serverConfig{})
	self, p1, p2, p3 := testEntry(1), testEntry(2), testEntry(3), testEntry(4)

	c := newClient([]string{a.hs.URL, downURL(t), b.hs.URL}, self)
	if err := c.Register(context.Background()); err != nil {
		t.Fatalf("Register: %v", err)
	}
	a.register(p1)
	a.register(p2)
	b.register(p2)
	b.register(p3)
	wantEntries(t, a.peers(), seenAt(self, t0), seenAt(p1, t0), seenAt(p2, t0))
	wantEntries(t, b.peers(), seenAt(self, t0), seenAt(p2, t0), seenAt(p3, t0))

	got, err := c.Peers(context.Background())
	if err != nil {
		t.Fatalf("Peers: %v", err)
	}
	wantEntries(t, got, seenAt(p1, t0), seenAt(p2, t0), seenAt(p3, t0))
}

func TestClientPeersSkipsBrokenServersAndInvalidEntries(t *testing.T) {
	clk := clock.NewFake(t0)
	live := startServer(t, clk, serverConfig{})
	p1, p2 := testEntry(2), testEntry(3)
	live.register(p1)

	serve := func(status int, body string) string {
		hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			fmt.Fprint(w, body)
		}))
		t.Cleanup(hs.Close)
		return hs.URL
	}
	garbage := serve(http.StatusOK, "<html>not a discovery server</html>")
	failing := serve(http.StatusInternalServerError, `{"error":"boom"}`)
	// A server (or something posing as one) may list entries a real one
	// would have refused; the client drops them.
	untrusted := serve(http.StatusOK, fmt.Sprintf(`[
		{"id":"not-an-id","name":"x","gossip_addr":"10.1.1.1:7946","http_addr":""},
		{"id":%q,"name":"x","gossip_addr":"h:0","http_addr":""},
		{"id":%q,"name":%q,"gossip_addr":%q,"http_addr":%q,"last_seen":%q}]`,
		testEntry(9).ID, p2.ID, p2.Name, p2.GossipAddr, p2.HTTPAddr, t0.Format(time.RFC3339Nano)))

	c := newClient([]string{garbage, failing, live.hs.URL, untrusted}, testEntry(1))
	got, err := c.Peers(context.Background())
	if err != nil {
		t.Fatalf("Peers: %v", err)
	}
	wantEntries(t, got, seenAt(p1, t0), seenAt(p2, t0))
}

func TestClientAllServersDown(t *testing.T) {
	c := newClient([]string{downURL(t), downURL(t)}, testEntry(1))
	ctx := context.Background()
	if err := c.Register(ctx); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("Register: %v, want ErrUnreachable", err)
	}
	if err := c.Heartbeat(ctx); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("Heartbeat: %v, want ErrUnreachable", err)
	}
	ps, err := c.Peers(ctx)
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("Peers: %v, want ErrUnreachable", err)
	}
	if len(ps) != 0 {
		t.Fatalf("Peers with every server down = %+v", ps)
	}
}

func TestClientReportsTheServersReason(t *testing.T) {
	live := startServer(t, clock.NewFake(t0), serverConfig{})
	self := testEntry(1)
	self.Name = strings.Repeat("n", 300)
	c := newClient([]string{live.hs.URL}, self)
	err := c.Register(context.Background())
	if err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "name longer") {
		t.Fatalf("Register with an over-long name: %v, want the 400 and its reason", err)
	}
	if n := live.entries(); n != 0 {
		t.Fatalf("/health entries = %d, want 0", n)
	}
}

func TestClientAcceptsHostPortAndTrailingSlash(t *testing.T) {
	live := startServer(t, clock.NewFake(t0), serverConfig{})
	self := testEntry(1)
	c := newClient([]string{strings.TrimPrefix(live.hs.URL, "http://") + "/"}, self)
	if err := c.Register(context.Background()); err != nil {
		t.Fatalf("Register: %v", err)
	}
	wantEntries(t, live.peers(), seenAt(self, t0))
}

func TestClientConcurrentUse(t *testing.T) {
	clk := clock.NewFake(t0)
	a := startServer(t, clk, serverConfig{})
	h := &swapHandler{}
	h.cur.Store(newServer(t, clk, serverConfig{}))
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	// Restarts for the swapping goroutine, made here because newServer
	// may stop the test.
	var restarts []*Server
	for range 3 {
		restarts = append(restarts, newServer(t, clk, serverConfig{}))
	}

	urls := []string{a.hs.URL, downURL(t), hs.URL}
	const nodes, rounds = 8, 10
	clients := make([]*Client, nodes)
	for i := range clients {
		clients[i] = newClient(urls, testEntry(i))
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	errc := make(chan error, 2*nodes)
	for i, c := range clients {
		// Two goroutines per client: its methods are meant to be safe for
		// concurrent use.
		for range 2 {
			wg.Go(func() {
				if err := c.Register(ctx); err != nil {
					errc <- fmt.Errorf("node %d: Register: %w", i, err)
					return
				}
				for range rounds {
					if err := c.Heartbeat(ctx); err != nil {
						errc <- fmt.Errorf("node %d: Heartbeat: %w", i, err)
						return
					}
					if _, err := c.Peers(ctx); err != nil {
						errc <- fmt.Errorf("node %d: Peers: %w", i, err)
						return
					}
				}
			})
		}
	}
	wg.Go(func() {
		for _, s := range restarts {
			h.cur.Swap(s).Close()
			clk.Advance(time.Second)
		}
	})
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}

	// Whatever the last restart forgot, one more round of heartbeats puts back.
	for i, c := range clients {
		if err := c.Heartbeat(ctx); err != nil {
			t.Fatalf("node %d: Heartbeat: %v", i, err)
		}
	}
	for name, ps := range map[string][]Entry{"a": a.srv.Peers(), "restarted": h.cur.Load().Peers()} {
		if len(ps) != nodes {
			t.Errorf("server %s lists %d peers, want %d", name, len(ps), nodes)
		}
	}
	for i, c := range clients {
		ps, err := c.Peers(ctx)
		if err != nil || len(ps) != nodes-1 {
			t.Errorf("node %d: Peers = %d entries, %v; want %d", i, len(ps), err, nodes-1)
		}
	}
}
