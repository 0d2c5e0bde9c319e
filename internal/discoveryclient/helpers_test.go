package discoveryclient

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/clock"
	"github.com/dcounter/dcounter/internal/discovery"
	"github.com/dcounter/dcounter/internal/testutil"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

type (
	Server = discovery.Server
	// serverConfig configures the discovery servers the client talks to.
	serverConfig = discovery.Config
)

// waitFor polls until cond holds (testutil.WaitFor).
var waitFor = testutil.WaitFor

// newServer returns a running discovery server on clk, closed when the test
// ends, once its expiry ticker is armed.
func newServer(t testing.TB, clk *clock.Fake, cfg serverConfig) *Server {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testutil.Logger(t, slog.LevelWarn)
	}
	cfg.Clock = clk
	armed := clk.Waiters() + 1
	s, err := discovery.New(cfg)
	if err != nil {
		t.Fatalf("discovery.New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	waitFor(t, "the expiry ticker to be armed", func() bool { return clk.Waiters() >= armed })
	return s
}

type testServer struct {
	t   testing.TB
	srv *Server
	hs  *httptest.Server
}

func startServer(t testing.TB, clk *clock.Fake, cfg serverConfig) *testServer {
	t.Helper()
	s := newServer(t, clk, cfg)
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return &testServer{t: t, srv: s, hs: hs}
}

// register registers e directly, as another node would.
func (ts *testServer) register(e Entry) {
	ts.t.Helper()
	c := New(Config{URLs: []string{ts.hs.URL}, Self: e})
	if err := c.Register(ts.t.Context()); err != nil {
		ts.t.Fatalf("register %s: %v", e.ID, err)
	}
}

func (ts *testServer) peers() []Entry { return ts.srv.Peers() }

func (ts *testServer) entries() int {
	ts.t.Helper()
	resp, err := http.Get(ts.hs.URL + "/health")
	if err != nil {
		ts.t.Fatal(err)
	}
	defer resp.Body.Close()
	var h struct{ Entries int }
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	if err := json.Unmarshal(buf.Bytes(), &h); err != nil {
		ts.t.Fatalf("/health %q: %v", buf.Bytes(), err)
	}
	return h.Entries
}

func testEntry(i int) Entry {
	return Entry{
		ID:         fmt.Sprintf("%016x", 0xd1c0000000000000+uint64(i)),
		Name:       fmt.Sprintf("node-%d", i),
		GossipAddr: fmt.Sprintf("10.0.%d.%d:7946", i/250, i%250+1),
		HTTPAddr:   fmt.Sprintf("10.0.%d.%d:8080", i/250, i%250+1),
	}
}

func wantEntries(t testing.TB, got []Entry, want ...Entry) {
	t.Helper()
	byID := func(a, b Entry) int { return strings.Compare(a.ID, b.ID) }
	got, want = slices.Clone(got), slices.Clone(want)
	slices.SortFunc(got, byID)
	slices.SortFunc(want, byID)
	if len(got) != len(want) {
		t.Fatalf("peers = %+v, want %+v", got, want)
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.ID != w.ID || g.Name != w.Name || g.GossipAddr != w.GossipAddr || g.HTTPAddr != w.HTTPAddr ||
			!g.LastSeen.Equal(w.LastSeen) {
			t.Fatalf("peers = %+v, want %+v", got, want)
		}
	}
}

func seenAt(e Entry, at time.Time) Entry {
	e.LastSeen = at
	return e
}

// newClient is New with a plain client bounded by clientTimeout.
func newClient(urls []string, self Entry) *Client {
	return New(Config{URLs: urls, Self: self, HTTP: &http.Client{Timeout: clientTimeout}})
}
