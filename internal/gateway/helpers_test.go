package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/api"
	"github.com/dcounter/dcounter/internal/clock"
	"github.com/dcounter/dcounter/internal/service"
	"github.com/dcounter/dcounter/internal/testutil"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// testHealthInterval is the gateway's health-check period in tests. The
// clock is fake, so it only passes when a test advances it.
const testHealthInterval = time.Second

// waitFor polls until cond holds (testutil.WaitFor).
var waitFor = testutil.WaitFor

// recv takes one value from ch, failing the test after 10s.
func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// testLogger routes warnings and errors to t.Log.
func testLogger(t testing.TB) *slog.Logger {
	return testutil.Logger(t, slog.LevelWarn)
}

// received is one request as a fake node saw it.
type received struct {
	Method      string
	URI         string // as sent on the wire: escaped path and query
	Key         string // the counter key, unescaped
	ContentType string
	IdemKey     string
	HasCT       bool
	Body        []byte
}

// behavior answers a fake node's counter requests. rec is what was recorded
// (the body has already been read).
type behavior func(n *fakeNode, w http.ResponseWriter, r *http.Request, rec received)

// Health modes of a fake node.
const (
	healthOK int32 = iota
	healthFail
	healthHang    // hold /health until the checker gives up
	healthGarbage // 200 with a body that is not JSON
)

// fakeNode is a node's client API as the gateway sees it, behind a real
// listener. /health and GET /counter (the value the health check reads)
// always answer from the node's state; every other request is recorded and
// answered by the current behavior (default: 200, applied).
type fakeNode struct {
	t    testing.TB
	name string
	id   string
	srv  *httptest.Server

	health atomic.Int32
	value  atomic.Int64 // of "default"

	mu           sync.Mutex
	behave       behavior
	reqs         []received
	applied      int
	healthChecks int
	counterReads int
}

var nextNodeID atomic.Uint64

func newFakeNode(t testing.TB, name string) *fakeNode {
	t.Helper()
	n := &fakeNode{t: t, name: name, id: fmt.Sprintf("%016x", nextNodeID.Add(1))}
	n.srv = httptest.NewServer(http.HandlerFunc(n.serve))
	t.Cleanup(n.srv.Close)
	return n
}

func newFakeNodes(t testing.TB, names ...string) []*fakeNode {
	t.Helper()
	ns := make([]*fakeNode, len(names))
	for i, name := range names {
		ns[i] = newFakeNode(t, name)
	}
	return ns
}

func (n *fakeNode) URL() string { return n.srv.URL }

// hostPort is the node's address as a discovery entry lists it.
func (n *fakeNode) hostPort() string { return strings.TrimPrefix(n.srv.URL, "http://") }

func (n *fakeNode) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/health" {
		n.mu.Lock()
		n.healthChecks++
		n.mu.Unlock()
		switch n.health.Load() {
		case healthFail:
			api.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "error": "test: failing"})
		case healthHang:
			<-r.Context().Done()
		case healthGarbage:
			w.WriteHeader(http.StatusOK)
			io.WriteString(w, "<html>not json</html>")
		default:
			api.WriteJSON(w, http.StatusOK, service.Health{Status: "ok", ID: n.id, Name: n.name})
		}
		return
	}
	if r.Method == http.MethodGet && r.URL.Path == "/counter" {
		n.mu.Lock()
		n.counterReads++
		n.mu.Unlock()
		api.WriteJSON(w, http.StatusOK, api.CounterResponse{Key: "default", Value: n.value.Load()})
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		n.t.Errorf("%s: reading the request body: %v", n.name, err)
	}
	rec := received{
		Method: r.Method, URI: r.RequestURI, Body: body,
		ContentType: r.Header.Get("Content-Type"), IdemKey: r.Header.Get(IdempotencyHeader),
	}
	_, rec.HasCT = r.Header["Content-Type"]
	if rt, err := api.Match(httptest.NewRecorder(), r); err == nil {
		rec.Key = rt.Key
	}
	n.mu.Lock()
	n.reqs = append(n.reqs, rec)
	b := n.behave
	n.mu.Unlock()
	if b == nil {
		b = answerOK
	}
	b(n, w, r, rec)
}

func (n *fakeNode) setBehavior(b behavior) {
	n.mu.Lock()
	n.behave = b
	n.mu.Unlock()
}

// requests returns the recorded requests (everything but /health and GET
// /counter, which the health check also sends).
func (n *fakeNode) requests() []received {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]received(nil), n.reqs...)
}

func (n *fakeNode) count() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.reqs)
}

// countKey is how many requests for key the node received.
func (n *fakeNode) countKey(key string) int {
	c := 0
	for _, r := range n.requests() {
		if r.Key == key {
			c++
		}
	}
	return c
}

func (n *fakeNode) appliedWrites() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.applied
}

func (n *fakeNode) healthCheckCount() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.healthChecks
}

func (n *fakeNode) counterReadCount() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.counterReads
}

// nodeAnswer is what the default behavior answers: a CounterResponse plus
// the name of the node that served it.
type nodeAnswer struct {
	Key   string `json:"key"`
	Value int64  `json:"value"`
	Node  string `json:"node"`
}

// answerOK applies writes (any method but GET and HEAD) and answers 200.
func answerOK(n *fakeNode, w http.ResponseWriter, r *http.Request, rec received) {
	n.mu.Lock()
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		n.applied++
	}
	v := int64(n.applied)
	n.mu.Unlock()
	api.WriteJSON(w, http.StatusOK, nodeAnswer{Key: rec.Key, Value: v, Node: n.name})
}

// answerStatus answers every counter request with status and an error body
// naming the node, without applying anything.
func answerStatus(status int) behavior {
	return func(n *fakeNode, w http.ResponseWriter, _ *http.Request, _ received) {
		api.WriteJSON(w, status, api.ErrorResponse{Error: fmt.Sprintf("%s says %d", n.name, status)})
	}
}

// hijackClose reads the request (the node has it) and closes the connection
// without answering, like a node that dies mid-request.
func hijackClose(n *fakeNode, w http.ResponseWriter, _ *http.Request, _ received) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		n.t.Errorf("%s: hijack: %v", n.name, err)
		return
	}
	conn.Close()
}

// holder is a behavior that holds every request until released (or until
// the request's context ends), announcing each on entered.
type holder struct {
	entered chan received
	release chan struct{}
	once    sync.Once
}

func newHolder(t testing.TB) *holder {
	h := &holder{entered: make(chan received, 1000), release: make(chan struct{})}
	t.Cleanup(h.releaseAll) // before the node's server closes: Close waits for handlers
	return h
}

func (h *holder) releaseAll() { h.once.Do(func() { close(h.release) }) }

func (h *holder) behavior(then behavior) behavior {
	return func(n *fakeNode, w http.ResponseWriter, r *http.Request, rec received) {
		h.entered <- rec
		select {
		case <-h.release:
			then(n, w, r, rec)
		case <-r.Context().Done():
		}
	}
}

// testGateway is a Gateway on a fake clock, served over a real listener.
type testGateway struct {
	*Gateway
	t      testing.TB
	clk    *clock.Fake
	m      *Metrics
	srv    *httptest.Server
	client *http.Client
}

// newTestGateway starts a gateway over nodes (as static --nodes) with cfg's
// other fields, on a fake clock and with metrics. It returns once the
// health-check ticker is armed, so that Advance drives the next check.
func newTestGateway(t testing.TB, cfg Config, nodes ...*fakeNode) *testGateway {
	t.Helper()
	for _, n := range nodes {
		cfg.Nodes = append(cfg.Nodes, n.URL())
	}
	clk := clock.NewFake(t0)
	cfg.Clock = clk
	if cfg.HealthInterval == 0 {
		cfg.HealthInterval = testHealthInterval
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics()
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	g, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { g.Close() })
	waitFor(t, "the health-check ticker to be armed", func() bool { return clk.Waiters() >= 1 })
	tg := &testGateway{Gateway: g, t: t, clk: clk, m: cfg.Metrics}
	tg.srv = httptest.NewServer(g)
	t.Cleanup(tg.srv.Close)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	tg.client = &http.Client{Transport: tr}
	return tg
}

// refresh passes one health interval and waits until every node has been
// checked at the new time.
// passListingGrace runs health-check rounds until a node that discovery
// stopped listing at the first of them is one round from leaving rotation.
func (tg *testGateway) passListingGrace() {
	tg.t.Helper()
	for d := time.Duration(0); d < defaultListingGrace; d += tg.cfg.HealthInterval {
		tg.refresh()
	}
}

func (tg *testGateway) refresh() {
	tg.t.Helper()
	tg.refreshUntil("every node checked", func([]NodeStatus) bool { return true })
}

// refreshUntil passes one health interval and waits until the resulting
// round has checked every known node and cond holds for the node list.
func (tg *testGateway) refreshUntil(what string, cond func([]NodeStatus) bool) {
	tg.t.Helper()
	tg.clk.Advance(tg.cfg.HealthInterval)
	want := tg.clk.Now().UTC().Format(time.RFC3339Nano)
	waitFor(tg.t, "a health-check round: "+what, func() bool {
		ns := tg.states()
		for _, n := range ns {
			if n.LastCheck != want {
				return false
			}
		}
		return cond(ns)
	})
}

// status returns the gateway's view of the node at url.
func (tg *testGateway) status(url string) NodeStatus {
	tg.t.Helper()
	for _, n := range tg.states() {
		if n.URL == url {
			return n
		}
	}
	tg.t.Fatalf("node %s not known to the gateway", url)
	return NodeStatus{}
}

// response is a gateway answer, read in full.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) errorMessage(t testing.TB) string {
	t.Helper()
	var e api.ErrorResponse
	if err := json.Unmarshal(r.Body, &e); err != nil {
		t.Fatalf("error body %q is not {\"error\":…}: %v", r.Body, err)
	}
	return e.Error
}

func (r response) answer(t testing.TB) nodeAnswer {
	t.Helper()
	var a nodeAnswer
	if err := json.Unmarshal(r.Body, &a); err != nil {
		t.Fatalf("body %q: %v", r.Body, err)
	}
	return a
}

// do sends one request to the gateway; hdr is alternating names and values.
func (tg *testGateway) do(method, path string, body []byte, hdr ...string) response {
	tg.t.Helper()
	resp, err := tg.doCtx(context.Background(), method, path, body, hdr...)
	if err != nil {
		tg.t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

func (tg *testGateway) doCtx(ctx context.Context, method, path string, body []byte, hdr ...string) (response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, tg.srv.URL+path, rd)
	if err != nil {
		return response{}, err
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := tg.client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// write sends an unkeyed increment of key.
func (tg *testGateway) write(key string) response {
	tg.t.Helper()
	return tg.do(http.MethodPost, "/counters/"+key+"/increment", []byte(`{"amount":1}`), "Content-Type", "application/json")
}

// keyedWrite sends an increment of key carrying an Idempotency-Key.
func (tg *testGateway) keyedWrite(key, idem string) response {
	tg.t.Helper()
	return tg.do(http.MethodPost, "/counters/"+key+"/increment", []byte(`{"amount":1}`),
		"Content-Type", "application/json", IdempotencyHeader, idem)
}

// metric returns the value of the sample name{labels} (labels as the text
// format prints them, e.g. `kind="write",outcome="ok"`), or 0 if absent.
func (tg *testGateway) metric(name, labels string) float64 {
	tg.t.Helper()
	rec := httptest.NewRecorder()
	tg.m.handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	want := name
	if labels != "" {
		want += "{" + labels + "}"
	}
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, want+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				tg.t.Fatalf("metric line %q: %v", line, err)
			}
			return v
		}
	}
	return 0
}

// untilNodeGets sends requests made by send(i) for i = 0, 1, … until one
// reaches n (or n shows unhealthy, for a node that refuses connections), and
// returns that request's key and response. Which node a request goes to
// first is its key's home; this finds a key whose home is n.
func (tg *testGateway) untilNodeGets(n *fakeNode, send func(key string) response) (string, response) {
	tg.t.Helper()
	// Each key goes to its home: 60 keys over a few nodes all miss n with
	// negligible odds.
	for i := 0; i < 60; i++ {
		key := fmt.Sprintf("k%d", i)
		before := n.count()
		unhealthyBefore := tg.status(n.URL()).Status == "unhealthy"
		resp := send(key)
		if n.count() > before || (!unhealthyBefore && tg.status(n.URL()).Status == "unhealthy") {
			return key, resp
		}
	}
	tg.t.Fatalf("no request reached %s in 60 tries", n.name)
	return "", response{}
}

// killNode stops n's server, so that connecting to it is refused, and drops
// the gateway's idle connections to it (a test must not depend on when the
// client notices that a pooled connection was closed).
func (tg *testGateway) killNode(n *fakeNode) {
	n.srv.Close()
	tg.Gateway.closeIdleConns()
}
