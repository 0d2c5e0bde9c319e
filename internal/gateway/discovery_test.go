package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/clock"
	"github.com/dcounter/dcounter/internal/discovery"
)

const discoveryTTL = 5 * time.Second

// fakeRegistry is a real discovery server on its own fake clock, behind a
// real listener.
type fakeRegistry struct {
	t   testing.TB
	clk *clock.Fake
	srv *httptest.Server
}

func newFakeRegistry(t testing.TB) *fakeRegistry {
	t.Helper()
	clk := clock.NewFake(t0)
	s, err := discovery.New(discovery.Config{TTL: discoveryTTL, Clock: clk, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return &fakeRegistry{t: t, clk: clk, srv: srv}
}

// register announces n (or refreshes its entry).
func (r *fakeRegistry) register(n *fakeNode) {
	r.t.Helper()
	body, _ := json.Marshal(map[string]string{
		"id": n.id, "name": n.name, "gossip_addr": "127.0.0.1:7946", "http_addr": n.hostPort(),
	})
	resp, err := http.Post(r.srv.URL+"/register", "application/json", bytes.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		r.t.Fatalf("register %s: %s", n.name, resp.Status)
	}
}

// keepOnly lets every entry expire and registers ns again.
func (r *fakeRegistry) keepOnly(ns ...*fakeNode) {
	r.t.Helper()
	r.clk.Advance(discoveryTTL + time.Second)
	for _, n := range ns {
		r.register(n)
	}
}

func urlsOf(ns []NodeStatus) []string {
	var us []string
	for _, n := range ns {
		us = append(us, n.URL)
	}
	slices.Sort(us)
	return us
}

func nodeURLs(ns ...*fakeNode) []string {
	var us []string
	for _, n := range ns {
		us = append(us, n.URL())
	}
	slices.Sort(us)
	return us
}

// listedURLs is urlsOf without the nodes discovery no longer lists.
func listedURLs(ss []NodeStatus) []string {
	var out []NodeStatus
	for _, st := range ss {
		if st.Status != "unlisted" {
			out = append(out, st)
		}
	}
	return urlsOf(out)
}

func TestDiscoveredNodesComeAndGoStaticNodesStay(t *testing.T) {
	reg := newFakeRegistry(t)
	ns := newFakeNodes(t, "static", "d1", "d2", "d3")
	static, d1, d2, d3 := ns[0], ns[1], ns[2], ns[3]
	reg.register(d1)
	reg.register(d2)
	tg := newTestGateway(t, Config{Discovery: []string{reg.srv.URL}}, static)

	// New reads the registry before its first check.
	if got, want := urlsOf(tg.Nodes()), nodeURLs(static, d1, d2); !slices.Equal(got, want) {
		t.Fatalf("nodes after New: %v, want %v", got, want)
	}
	for _, st := range tg.Nodes() {
		if st.Status != "healthy" {
			t.Errorf("%s is %s after New, want healthy", st.URL, st.Status)
		}
	}
	tg.untilNodeGets(d2, tg.write)

	// A newly registered node is picked up at the next round and used.
	reg.register(d3)
	tg.refreshUntil("d3 discovered", func(s []NodeStatus) bool { return len(s) == 4 })
	if st := tg.status(d3.URL()); st.Status != "healthy" || st.Name != "d3" {
		t.Fatalf("d3: %+v, want healthy", st)
	}
	tg.untilNodeGets(d3, tg.write)

	// d2 is no longer listed: out of rotation after the listing grace
	// (kept only as the home of its idempotency keys). The static node was never listed and stays.
	reg.keepOnly(d1, d3)
	tg.passListingGrace()
	tg.refreshUntil("d2 unlisted", func([]NodeStatus) bool { return tg.status(d2.URL()).Status == "unlisted" })
	if got, want := listedURLs(tg.Nodes()), nodeURLs(static, d1, d3); !slices.Equal(got, want) {
		t.Fatalf("nodes after d2 expired: %v, want %v", got, want)
	}
	before := d2.count()
	for i := 0; i < 12; i++ {
		tg.write(fmt.Sprintf("after%d", i))
	}
	if got := d2.count() - before; got != 0 {
		t.Errorf("dropped d2 received %d requests", got)
	}

	// Nothing listed at all: only the static node is left in rotation, and
	// once the key-home grace has passed the others are forgotten.
	reg.keepOnly()
	tg.passListingGrace()
	tg.refreshUntil("discovered nodes unlisted", func(s []NodeStatus) bool { return len(listedURLs(s)) == 1 })
	if got, want := listedURLs(tg.Nodes()), nodeURLs(static); !slices.Equal(got, want) {
		t.Fatalf("nodes with an empty registry: %v, want %v", got, want)
	}
	tg.clk.Advance(2 * time.Hour)
	tg.refreshUntil("unlisted nodes forgotten", func(s []NodeStatus) bool { return len(s) == 1 })
	if resp := tg.write("only"); resp.Status != http.StatusOK || resp.answer(t).Node != "static" {
		t.Errorf("write: %d %s, want 200 from the static node", resp.Status, resp.Body)
	}
}

func TestStaticNodeListedByDiscoveryIsNeverDropped(t *testing.T) {
	reg := newFakeRegistry(t)
	ns := newFakeNodes(t, "s", "d")
	s, d := ns[0], ns[1]
	reg.register(s)
	reg.register(d)
	tg := newTestGateway(t, Config{Discovery: []string{reg.srv.URL}}, s)
	if got := len(tg.Nodes()); got != 2 {
		t.Fatalf("%d nodes, want 2 (the static one listed twice counts once)", got)
	}
	reg.keepOnly(d)
	tg.refresh()
	reg.keepOnly()
	tg.refresh() // d unlisted from now
	tg.clk.Advance(2 * time.Hour)
	tg.refreshUntil("d forgotten", func(st []NodeStatus) bool { return len(st) == 1 })
	if got, want := urlsOf(tg.Nodes()), nodeURLs(s); !slices.Equal(got, want) {
		t.Errorf("nodes: %v, want the static %v", got, want)
	}
}

func TestUnreachableDiscoveryKeepsTheKnownNodes(t *testing.T) {
	reg := newFakeRegistry(t)
	d := newFakeNode(t, "d")
	reg.register(d)
	tg := newTestGateway(t, Config{Discovery: []string{reg.srv.URL}, HealthTimeout: 200 * time.Millisecond})
	if got, want := urlsOf(tg.Nodes()), nodeURLs(d); !slices.Equal(got, want) {
		t.Fatalf("nodes: %v, want %v", got, want)
	}
	reg.srv.Close()
	tg.refresh()
	tg.refresh()
	if st := tg.status(d.URL()); st.Status != "healthy" {
		t.Errorf("d: %+v, want still known and healthy", st)
	}
	if resp := tg.write("x"); resp.Status != http.StatusOK {
		t.Errorf("write: %d %s", resp.Status, resp.Body)
	}
}

func TestDiscoveryOnlyGatewayStartsWithoutNodes(t *testing.T) {
	reg := newFakeRegistry(t)
	tg := newTestGateway(t, Config{Discovery: []string{reg.srv.URL}})
	if resp := tg.write("x"); resp.Status != http.StatusServiceUnavailable || !strings.Contains(resp.errorMessage(t), "no healthy node") {
		t.Errorf("write with no nodes: %d %s, want 503 no healthy node", resp.Status, resp.Body)
	}
	if resp := tg.do("GET", "/health", nil); resp.Status != http.StatusServiceUnavailable {
		t.Errorf("GET /health with no nodes: %d, want 503", resp.Status)
	}
	d := newFakeNode(t, "d")
	reg.register(d)
	tg.refreshUntil("d discovered", func(s []NodeStatus) bool { return len(s) == 1 })
	if resp := tg.write("x"); resp.Status != http.StatusOK || resp.answer(t).Node != "d" {
		t.Errorf("write: %d %s, want 200 from d", resp.Status, resp.Body)
	}
}

// The package promises that a keyed write whose home is down fails with 503
// "rather than risk being applied a second time elsewhere". In discovery
// mode the home is chosen among the nodes discovery lists, so once a down
// home's registry entry expires (TTL, 5s by default) its keys move to
// another node, which applies the retry.
func TestKeyedWriteDoesNotMoveWhenItsDownHomeLeavesDiscovery(t *testing.T) {
	reg := newFakeRegistry(t)
	ns := newFakeNodes(t, "d1", "d2", "d3")
	for _, n := range ns {
		reg.register(n)
	}
	tg := newTestGateway(t, Config{Discovery: []string{reg.srv.URL}})
	const key = "move-1"
	tg.keyedWrite(key, key)
	home := homeOf(ns, key)
	home.health.Store(healthFail)
	tg.refresh()
	if resp := tg.keyedWrite(key, key); resp.Status != http.StatusServiceUnavailable {
		t.Fatalf("keyed write with its home down: %d %s, want 503", resp.Status, resp.Body)
	}
	var others []*fakeNode
	for _, n := range ns {
		if n != home {
			others = append(others, n)
		}
	}
	reg.keepOnly(others...) // the home stopped heartbeating
	tg.passListingGrace()
	tg.refreshUntil("the home unlisted", func(s []NodeStatus) bool { return len(listedURLs(s)) == 2 })
	resp := tg.keyedWrite(key, key)
	for _, n := range others {
		if got := n.countKey(key); got != 0 {
			t.Errorf("%s received the keyed write %d times (answer %d %s); want it refused, not moved", n.name, got, resp.Status, resp.Body)
		}
	}
}

// A discovery server that restarts without its data file lists nobody
// until the nodes' next heartbeats. Healthy, proven nodes stay in rotation
// meanwhile: every write succeeds. A node that stays unlisted for the
// listing grace leaves rotation, and one that fails its checks gets nothing
// even within the grace.
func TestRestartedDiscoveryKeepsHealthyNodesInRotation(t *testing.T) {
	reg := newFakeRegistry(t)
	ns := newFakeNodes(t, "d1", "d2", "d3")
	d1, d2, d3 := ns[0], ns[1], ns[2]
	for _, n := range ns {
		reg.register(n)
	}
	tg := newTestGateway(t, Config{Discovery: []string{reg.srv.URL}})

	// The registry comes back empty: within the grace every node still
	// gets writes and /health counts them all.
	reg.keepOnly()
	for d := time.Duration(0); d+tg.cfg.HealthInterval < defaultListingGrace; d += tg.cfg.HealthInterval {
		tg.refresh()
		for _, n := range ns {
			tg.untilNodeGets(n, func(key string) response {
				resp := tg.write(key)
				if resp.Status != http.StatusOK {
					t.Fatalf("write with an empty registry within the grace: %d %s", resp.Status, resp.Body)
				}
				return resp
			})
		}
		if ok, h := tg.Health(); !ok || h.HealthyNodes != 3 {
			t.Fatalf("health with an empty registry within the grace: %v %+v, want 3 healthy", ok, h)
		}
	}
	// The nodes heartbeat again before the grace ends: nothing changed.
	for _, n := range ns {
		reg.register(n)
	}
	tg.refresh()
	for _, st := range tg.Nodes() {
		if st.Status != "healthy" {
			t.Fatalf("%s: %+v after the registry relearned it, want healthy", st.Name, st)
		}
	}

	// d3 fails its checks while unlisted: no traffic, grace or not.
	d3.health.Store(healthFail)
	reg.keepOnly(d1, d2)
	tg.refresh()
	before := d3.count()
	for i := range 12 {
		if resp := tg.write(fmt.Sprintf("w%d", i)); resp.Status != http.StatusOK {
			t.Fatalf("write: %d %s", resp.Status, resp.Body)
		}
	}
	if got := d3.count() - before; got != 0 {
		t.Errorf("unhealthy unlisted d3 received %d requests", got)
	}

	// d2 leaves the registry for good: out of rotation after the grace.
	d3.health.Store(healthOK)
	reg.keepOnly(d1, d3)
	tg.passListingGrace()
	tg.refreshUntil("d2 out of rotation", func([]NodeStatus) bool { return tg.status(d2.URL()).Status == "unlisted" })
	before = d2.count()
	for i := range 12 {
		tg.write(fmt.Sprintf("after%d", i))
	}
	if got := d2.count() - before; got != 0 {
		t.Errorf("d2, unlisted beyond the grace, received %d requests", got)
	}
	if ok, h := tg.Health(); !ok || h.HealthyNodes != 2 || h.Nodes != 2 {
		t.Errorf("health: %v %+v, want 2 nodes, both healthy", ok, h)
	}
}
