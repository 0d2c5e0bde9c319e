package gateway

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/clock"
	"github.com/dcounter/dcounter/internal/clusterkey"
	"github.com/dcounter/dcounter/internal/clusterkey/clusterkeytest"
	"github.com/dcounter/dcounter/internal/discovery"
	"github.com/dcounter/dcounter/internal/discoveryclient"
	"github.com/dcounter/dcounter/internal/memberproof"
)

// newMemberNode is a fake node that answers membership challenges with
// keys for cluster "dcounter" (no keys: it cannot prove anything).
func newMemberNode(t testing.TB, name string, keys clusterkey.Keyring) (*fakeNode, *memberproof.Prover) {
	t.Helper()
	n := &fakeNode{t: t, name: name, id: fmt.Sprintf("%016x", nextNodeID.Add(1))}
	p := &memberproof.Prover{Cluster: "dcounter", ID: n.id, Name: name, Keyring: keys}
	n.srv = httptest.NewServer(memberproof.Mount(http.HandlerFunc(n.serve), p))
	t.Cleanup(n.srv.Close)
	return n, p
}

// clientRequests counts what n received besides health checks and
// membership challenges (which a node that cannot answer them records).
func clientRequests(n *fakeNode) int {
	c := 0
	for _, r := range n.requests() {
		if r.URI != memberproof.Path {
			c++
		}
	}
	return c
}

// A keyed gateway sends nothing — no write, no read — to an address that
// answers 200 to everything, nor to nodes of another key or cluster.
func TestKeyedGatewaySendsClientTrafficOnlyToProvenMembers(t *testing.T) {
	keys := clusterkeytest.Ring(t, 1)
	good, _ := newMemberNode(t, "good", keys)
	evil := newFakeNode(t, "evil") // answers 200 to everything, proves nothing
	otherKey, _ := newMemberNode(t, "other-key", clusterkeytest.Ring(t, 9))
	otherCluster, p := newMemberNode(t, "other-cluster", keys)
	p.Cluster = "elsewhere"
	tg := newTestGateway(t, Config{Keyring: keys}, good, evil, otherKey, otherCluster)

	const n = 100
	for i := range n {
		if resp := tg.write(fmt.Sprintf("k%d", i)); resp.Status != http.StatusOK || resp.answer(t).Node != "good" {
			t.Fatalf("write %d: %d %s", i, resp.Status, resp.Body)
		}
		if resp := tg.keyedWrite(fmt.Sprintf("k%d", i), fmt.Sprintf("idem-%d", i)); resp.Status != http.StatusOK || resp.answer(t).Node != "good" {
			t.Fatalf("keyed write %d: %d %s", i, resp.Status, resp.Body)
		}
		if resp := tg.do(http.MethodGet, "/counters/k", nil); resp.Status != http.StatusOK {
			t.Fatalf("read %d: %d %s", i, resp.Status, resp.Body)
		}
	}
	for _, bad := range []*fakeNode{evil, otherKey, otherCluster} {
		if got := clientRequests(bad); got != 0 {
			t.Errorf("%s received %d client requests, want 0", bad.name, got)
		}
		st := tg.status(bad.URL())
		if st.Status != "unproven" || st.Error != "not a proven member" || st.ID != "" || st.Name != "" {
			t.Errorf("%s: %+v, want unproven, not a proven member, no id or name", bad.name, st)
		}
	}
	if got := good.appliedWrites(); got != 2*n {
		t.Errorf("good applied %d writes, want %d", got, 2*n)
	}
}

// The id and name the gateway shows come from the proof, not from what the
// node's health check (or discovery) claims.
func TestIdentityComesFromTheProof(t *testing.T) {
	keys := clusterkeytest.Ring(t, 1)
	n, p := newMemberNode(t, "real-name", keys)
	n.name = "health-check-name" // what /health claims
	tg := newTestGateway(t, Config{Keyring: keys}, n)
	if st := tg.status(n.URL()); st.Status != "healthy" || st.Name != "real-name" || st.ID != p.ID {
		t.Fatalf("%+v, want healthy with the proof's name and id", st)
	}
}

// A node whose proof stops verifying (another process took its address,
// or its key left the ring) is out of rotation at the next check.
func TestNodeThatStopsProvingLosesTraffic(t *testing.T) {
	keys := clusterkeytest.Ring(t, 1)
	a, pa := newMemberNode(t, "a", keys)
	b, _ := newMemberNode(t, "b", keys)
	tg := newTestGateway(t, Config{Keyring: keys}, a, b)
	tg.untilNodeGets(a, tg.write)
	pa.Keyring = clusterkeytest.Ring(t, 7)
	tg.refreshUntil("a unproven", func([]NodeStatus) bool { return tg.status(a.URL()).Error == "not a proven member" })
	before := clientRequests(a)
	for i := range 20 {
		if resp := tg.write(fmt.Sprintf("x%d", i)); resp.Status != http.StatusOK {
			t.Fatalf("write: %d %s", resp.Status, resp.Body)
		}
	}
	if got := clientRequests(a) - before; got != 0 {
		t.Fatalf("a received %d requests after failing its proof", got)
	}
}

// Unproven entries are never key homes: keyed writes succeed whatever
// number of them is listed.
func TestUnprovenEntriesNeverBlockKeyedWrites(t *testing.T) {
	keys := clusterkeytest.Ring(t, 1)
	a, _ := newMemberNode(t, "a", keys)
	b, _ := newMemberNode(t, "b", keys)
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	cfg := Config{Keyring: keys, Nodes: []string{down.URL, "http://127.0.0.1:1", newFakeNode(t, "evil").URL()}}
	for _, dev := range []bool{false, true} {
		if dev { // without a key, a node that never answered its check is no home either
			cfg.Keyring = clusterkey.Keyring{}
			cfg.Nodes = cfg.Nodes[:2]
		}
		tg := newTestGateway(t, cfg, a, b)
		for i := range 200 {
			key := fmt.Sprintf("dev%v-%d", dev, i)
			if resp := tg.keyedWrite(key, key); resp.Status != http.StatusOK {
				t.Fatalf("dev=%v: keyed write %d: %d %s", dev, i, resp.Status, resp.Body)
			}
		}
	}
}

// keyedRegistry is a discovery server with keys on a fake clock.
func keyedRegistry(t testing.TB, keys clusterkey.Keyring) (*httptest.Server, *clock.Fake) {
	t.Helper()
	clk := clock.NewFake(t0)
	s, err := discovery.New(discovery.Config{TTL: discoveryTTL, Clock: clk, Logger: testLogger(t), Keyring: keys})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return hs, clk
}

func registerSigned(t testing.TB, url string, keys clusterkey.Keyring, n *fakeNode) {
	t.Helper()
	c := discoveryclient.New(discoveryclient.Config{URLs: []string{url}, Keyring: keys, Self: discoveryclient.Entry{
		ID: n.id, Name: n.name, GossipAddr: "127.0.0.1:7946", HTTPAddr: n.hostPort()}})
	if err := c.Register(context.Background()); err != nil {
		t.Fatalf("register %s: %v", n.name, err)
	}
}

// Unlisted nodes are kept as key homes only if they proved membership, at
// most MaxUnlisted of them and for at most KeyHomeGrace.
func TestUnlistedRetentionIsBounded(t *testing.T) {
	keys := clusterkeytest.Ring(t, 1)
	hs, rclk := keyedRegistry(t, keys)
	var ns []*fakeNode
	for i := range 4 {
		n, _ := newMemberNode(t, fmt.Sprintf("m%d", i), keys)
		ns = append(ns, n)
		registerSigned(t, hs.URL, keys, n)
	}
	fake := newFakeNode(t, "fake")
	registerSigned(t, hs.URL, keys, fake) // a key holder listing an address that proves nothing
	tg := newTestGateway(t, Config{Keyring: keys, Discovery: []string{hs.URL}, MaxUnlisted: 2, KeyHomeGrace: time.Minute})
	if got := len(tg.Nodes()); got != 5 {
		t.Fatalf("%d nodes, want 5", got)
	}
	rclk.Advance(discoveryTTL + time.Second) // everything expires
	registerSigned(t, hs.URL, keys, ns[0])
	tg.refreshUntil("unlisted nodes bounded", func(s []NodeStatus) bool { return len(s) == 3 })
	for _, st := range tg.Nodes() {
		if st.URL == fake.URL() {
			t.Fatalf("the never-proven entry is kept: %+v", st)
		}
	}
	tg.clk.Advance(time.Minute)
	tg.refreshUntil("unlisted nodes forgotten after the grace", func(s []NodeStatus) bool { return len(s) == 1 })
}

// Without a key, the number of nodes tracked from discovery is capped.
func TestTrackedNodesAreCapped(t *testing.T) {
	reg := newFakeRegistry(t)
	for i := range 10 {
		reg.register(&fakeNode{id: fmt.Sprintf("%016x", 0xfa0000+i), name: "f",
			srv: &httptest.Server{URL: fmt.Sprintf("http://127.0.0.1:%d", 1+i)}})
	}
	tg := newTestGateway(t, Config{Discovery: []string{reg.srv.URL}, MaxNodes: 3})
	if got := len(tg.Nodes()); got != 3 {
		t.Fatalf("%d nodes tracked, want the cap 3", got)
	}
}

// /nodes shows coarse states only: nothing of the raw errors met at
// addresses the gateway was told about.
func TestNodesReportsNoRawErrors(t *testing.T) {
	for _, keyed := range []bool{false, true} {
		t.Run(fmt.Sprintf("keyed=%v", keyed), func(t *testing.T) {
			down := httptest.NewServer(http.NotFoundHandler())
			down.Close()
			notFound := httptest.NewServer(http.NotFoundHandler())
			t.Cleanup(notFound.Close)
			// Accepts connections (the kernel does) but never answers.
			silent, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { silent.Close() })
			garbage := newFakeNode(t, "garbage")
			garbage.health.Store(healthGarbage)
			cfg := Config{HealthTimeout: 200 * time.Millisecond,
				Nodes: []string{down.URL, notFound.URL, "http://no-such-host.invalid:80", "http://" + silent.Addr().String(), garbage.URL()}}
			if keyed {
				cfg.Keyring = clusterkeytest.Ring(t, 1)
			}
			tg := newTestGateway(t, cfg)
			resp := tg.do(http.MethodGet, "/nodes", nil)
			body := string(resp.Body)
			for _, st := range tg.Nodes() { // a port or a timestamp may well contain "404"
				body = strings.ReplaceAll(body, st.URL, "")
				if st.LastCheck != "" {
					body = strings.ReplaceAll(body, st.LastCheck, "")
				}
			}
			for _, leak := range []string{"refused", "dial", "no such host", "404", "Not Found", "invalid character", "timeout", "lookup", "answered"} {
				if strings.Contains(body, leak) {
					t.Errorf("/nodes mentions %q:\n%s", leak, resp.Body)
				}
			}
			for _, st := range tg.Nodes() {
				switch st.Error {
				case "unreachable", "not a proven member", "unhealthy":
				default:
					t.Errorf("%s: error %q is not a coarse state", st.URL, st.Error)
				}
			}
		})
	}
}
