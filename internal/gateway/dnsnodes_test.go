package gateway

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/joinaddr/joinaddrtest"
	"github.com/dcounter/dcounter/internal/testutil"
)

// srvFor is an SRV record per node, all at host "loopback.test.".
func srvFor(nodes ...*fakeNode) []*net.SRV {
	var recs []*net.SRV
	for _, n := range nodes {
		_, port, _ := net.SplitHostPort(n.hostPort())
		p, _ := strconv.Atoi(port)
		recs = append(recs, &net.SRV{Target: "loopback.test.", Port: uint16(p)})
	}
	return recs
}

// fakeNodeAt is a fake node listening on addr.
func fakeNodeAt(t *testing.T, name, addr string) *fakeNode {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	n := newFakeNode(t, name)
	n.srv.Close()
	n.srv = httptest.NewUnstartedServer(http.HandlerFunc(n.serve))
	n.srv.Listener = ln
	n.srv.Start()
	t.Cleanup(n.srv.Close)
	return n
}

func TestParseDNSNodes(t *testing.T) {
	for spec, want := range map[string]string{
		"dns+dcounter.ns.svc:8080":                   "http",
		"dns+https://dcounter.ns.svc:8443/":          "https",
		"dnssrv+_http._tcp.dcounter.ns.svc":          "http",
		"dnssrv+https://_https._tcp.dcounter.ns.svc": "https",
	} {
		d, err := parseDNSNodes(spec)
		if err != nil || d.scheme != want || d.target.Spec != spec {
			t.Errorf("parseDNSNodes(%q) = %+v, %v; want scheme %s", spec, d, err, want)
		}
	}
	for _, spec := range []string{"dns+ftp://x:1", "dns+x", "dnssrv+http://x:80", "dns+http://"} {
		_, err := New(Config{Nodes: []string{spec}})
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), spec) {
			t.Errorf("New with --nodes %q: err %v, want ErrConfig naming it", spec, err)
		}
	}
}

// Nodes behind a dns+ name (one port, several addresses) and a dnssrv+
// name (one host, several ports) are all used; a node added to the records
// is picked up at the next resolution; one removed leaves rotation after
// the listing grace; a name that stops resolving keeps its nodes.
func TestGatewayNodesFromDNS(t *testing.T) {
	a := fakeNodeAt(t, "a", "127.0.0.1:0")
	_, port, _ := net.SplitHostPort(a.hostPort())
	b := fakeNodeAt(t, "b", "127.0.0.2:"+port)
	s1, s2 := newFakeNode(t, "s1"), newFakeNode(t, "s2")
	dns := &joinaddrtest.Resolver{}
	dns.SetHost("dcounter.test", "127.0.0.1")
	dns.SetHost("loopback.test", "127.0.0.1")
	dns.SetSRV("_http._tcp.dcounter.test", srvFor(s1)...)
	var warnings atomic.Int64
	tg := newTestGateway(t, Config{
		Nodes:    []string{"dns+dcounter.test:" + port, "dnssrv+_http._tcp.dcounter.test"},
		Resolver: dns, ResolveInterval: 10 * time.Second,
		Logger: slog.New(testutil.CountingHandler(testLogger(t).Handler(), "does not resolve", &warnings)),
	})
	urls := func(ns []NodeStatus) []string {
		var out []string
		for _, n := range ns {
			if n.Status == "healthy" {
				out = append(out, n.URL)
			}
		}
		slices.Sort(out)
		return out
	}
	want := func(ns ...*fakeNode) func([]NodeStatus) bool {
		var w []string
		for _, n := range ns {
			w = append(w, n.URL())
		}
		slices.Sort(w)
		return func(got []NodeStatus) bool { return slices.Equal(urls(got), w) }
	}
	tg.refreshUntil("a and s1 healthy", want(a, s1))

	dns.SetHost("dcounter.test", "127.0.0.1", "127.0.0.2")
	dns.SetSRV("_http._tcp.dcounter.test", srvFor(s1, s2)...)
	for i := 0; i < 8; i++ { // to 9s after the first resolution
		tg.refresh()
	}
	if got := urls(tg.Nodes()); len(got) != 2 {
		t.Fatalf("re-resolved before --resolve-interval: %v", got)
	}
	tg.refreshUntil("every node healthy after re-resolution", want(a, b, s1, s2))
	for _, n := range []*fakeNode{a, b, s1, s2} {
		tg.untilNodeGets(n, tg.write)
	}

	// A name that stops resolving keeps what it gave.
	dns.SetHost("dcounter.test") // no longer resolves
	for i := 0; i < 15; i++ {
		tg.refresh()
	}
	tg.refreshUntil("nodes kept while the name fails", want(a, b, s1, s2))
	if n := warnings.Load(); n != 1 {
		t.Fatalf("%d warnings in 16s of a failing name, want 1 (at most one a minute)", n)
	}

	// A node dropped from the records leaves rotation after the grace.
	dns.SetSRV("_http._tcp.dcounter.test", srvFor(s2)...)
	for i := 0; i < 10; i++ {
		tg.refresh()
	}
	tg.passListingGrace()
	tg.refreshUntil("s1 out of rotation", want(a, b, s2))
}
