package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/clusterkey"
	"github.com/dcounter/dcounter/internal/discoveryclient"
)

// trustEnv is the environment giving a process the cluster key.
func trustEnv(key string) []string { return []string{"DCOUNTER_CLUSTER_KEY=" + key} }

// startKeyedDiscovery starts a discovery server holding key (none if "").
func startKeyedDiscovery(t testing.TB, key string, extra ...string) *proc {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := &proc{t: t, name: "discovery", HTTP: "http://" + addr,
		args: append([]string{"discovery", "--http-addr", addr, "--ttl", "3s", "--log-level", "debug"}, extra...)}
	p.startWithEnv(trustEnv(key))
	return p
}

// startKeyedNode starts a node holding key, registered with discovery URL,
// with extra flags.
func startKeyedNode(t testing.TB, name, key, disc string, extra ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name,
		Gossip: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		HTTP:   fmt.Sprintf("http://127.0.0.1:%d", freePort(t))}
	p.DataDir = t.TempDir()
	p.args = []string{"node", "--name", name, "--gossip-addr", p.Gossip,
		"--http-addr", strings.TrimPrefix(p.HTTP, "http://"), "--data-dir", p.DataDir,
		"--log-level", "debug", "--discovery", disc, "--bootstrap"}
	p.args = append(p.args, extra...)
	p.startWithEnv(trustEnv(key))
	return p
}

// startKeyedGateway starts a gateway holding key over nodes (URLs) and
// extra flags; it returns once the gateway reports healthy nodes.
func startKeyedGateway(t testing.TB, key string, nodes []string, extra ...string) *proc {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	args := []string{"gateway", "--http-addr", addr, "--log-level", "debug", "--health-interval", "200ms"}
	if len(nodes) > 0 {
		args = append(args, "--nodes", strings.Join(nodes, ","))
	}
	g := &proc{t: t, name: "gateway", HTTP: "http://" + addr, args: append(args, extra...)}
	g.startWithEnv(trustEnv(key))
	return g
}

// impostor is an HTTP server answering 200 {"key":…,"value":0} to
// everything, counting the client requests it receives (membership
// challenges aside).
type impostor struct {
	srv     *httptest.Server
	clients atomic.Int64
}

func newImpostor(t testing.TB) *impostor {
	im := &impostor{}
	im.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path != "/cluster/proof" && r.URL.Path != "/health" && !(r.Method == http.MethodGet && r.URL.Path == "/counter") {
			im.clients.Add(1)
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"status":"ok","id":"00000000000000ee","name":"impostor","key":"k","value":0}`)
	}))
	t.Cleanup(im.srv.Close)
	return im
}

// recorder is a reverse proxy in front of a discovery server that keeps a
// copy of every request passing through: what an attacker on the path
// would capture.
type recorder struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []captured
}

type captured struct {
	method, path string
	header       http.Header
	body         []byte
}

func newRecorder(t testing.TB, target string) *recorder {
	u, _ := url.Parse(target)
	rp := httputil.NewSingleHostReverseProxy(u)
	rec := &recorder{}
	rec.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.got = append(rec.got, captured{r.Method, r.URL.Path, r.Header.Clone(), body})
		rec.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(rec.srv.Close)
	return rec
}

func (rec *recorder) find(path string) (captured, bool) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, c := range rec.got {
		if c.path == path && c.header.Get("Authorization") != "" {
			return c, true
		}
	}
	return captured{}, false
}

// send sends a request to base and returns its status and body.
func send(t testing.TB, method, u string, header http.Header, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func discoveryEntries(t testing.TB, d *proc) int {
	t.Helper()
	b, err := d.get("/health")
	if err != nil {
		t.Fatal(err)
	}
	var h struct{ Entries int }
	json.Unmarshal(b, &h)
	return h.Entries
}

// Registrations, heartbeats and peer reads without the key are refused
// (401) and the registry does not grow; a recorded registration sent again
// is refused; a forged re-registration of a real node's id changes
// nothing.
func TestTrustDiscoveryRefusesUnauthenticatedReplayedAndForged(t *testing.T) {
	key := clusterkey.Generate()
	d := startKeyedDiscovery(t, key)
	rec := newRecorder(t, d.HTTP)
	n1 := startKeyedNode(t, "n1", key, rec.srv.URL)
	startKeyedNode(t, "n2", key, d.HTTP)
	waitFor(t, 10*time.Second, func() error {
		if n := discoveryEntries(t, d); n != 2 {
			return fmt.Errorf("%d entries", n)
		}
		if _, ok := rec.find("/heartbeat"); !ok {
			return fmt.Errorf("no heartbeat recorded yet")
		}
		return nil
	}, true)

	// Without the key: 401, whatever the route, and nothing registered.
	fakeID := "00000000000000ee"
	for i := range 50 {
		body := fmt.Sprintf(`{"id":"%016x","name":"fake","gossip_addr":"127.0.0.1:1","http_addr":"127.0.0.1:2"}`, 0xee00+i)
		if st, b := send(t, http.MethodPost, d.HTTP+"/register", nil, []byte(body)); st != http.StatusUnauthorized {
			t.Fatalf("unauthenticated register: %d %s, want 401", st, b)
		}
	}
	if st, _ := send(t, http.MethodGet, d.HTTP+"/peers", nil, nil); st != http.StatusUnauthorized {
		t.Fatalf("unauthenticated GET /peers: %d, want 401", st)
	}
	if st, _ := send(t, http.MethodPost, d.HTTP+"/heartbeat", nil, []byte(`{"id":"`+fakeID+`","gossip_addr":"127.0.0.1:1"}`)); st != http.StatusUnauthorized {
		t.Fatalf("unauthenticated heartbeat: %d, want 401", st)
	}

	// Replay: the node's own registration and heartbeat, recorded on the
	// path and sent again verbatim.
	for _, path := range []string{"/register", "/heartbeat"} {
		c, ok := rec.find(path)
		if !ok {
			t.Fatalf("no %s recorded", path)
		}
		if st, b := send(t, c.method, d.HTTP+c.path, c.header, c.body); st != http.StatusUnauthorized {
			t.Fatalf("replayed %s: %d %s, want 401", path, st, b)
		}
	}

	// Forged re-registration of n1's id, with another address: signed
	// with a wrong key, or not at all, every 100 ms for 2 s.
	var n1ID string
	{
		b, _ := n1.get("/health")
		var h struct{ ID string }
		json.Unmarshal(b, &h)
		n1ID = h.ID
	}
	wrong := discoveryclient.New(discoveryclient.Config{URLs: []string{d.HTTP}, Keyring: mustKeyring(t, clusterkey.Generate()),
		Self: discoveryclient.Entry{ID: n1ID, Name: "n1", GossipAddr: "127.0.0.1:1", HTTPAddr: "127.0.0.1:2"}})
	reader := discoveryclient.New(discoveryclient.Config{URLs: []string{d.HTTP}, Keyring: mustKeyring(t, key)})
	replaced := 0
	for range 20 {
		if err := wrong.Register(context.Background()); err == nil {
			t.Fatal("registration signed with the wrong key accepted")
		}
		send(t, http.MethodPost, d.HTTP+"/register", nil,
			[]byte(`{"id":"`+n1ID+`","name":"n1","gossip_addr":"127.0.0.1:1","http_addr":"127.0.0.1:2"}`))
		peers, err := reader.Peers(context.Background())
		if err != nil {
			t.Fatalf("signed peers: %v", err)
		}
		for _, p := range peers {
			if p.ID == n1ID && p.HTTPAddr != strings.TrimPrefix(n1.HTTP, "http://") {
				replaced++
			}
		}
		time.Sleep(100 * time.Millisecond) // the attack's pace, not a wait for a condition
	}
	if replaced != 0 {
		t.Fatalf("n1's entry was replaced in %d of 20 samples", replaced)
	}
	if n := discoveryEntries(t, d); n != 2 {
		t.Fatalf("registry holds %d entries after the attacks, want 2", n)
	}
	b, _ := d.get("/metrics")
	if !strings.Contains(string(b), `dcounter_discovery_refused_total{reason="unauthenticated"}`) {
		t.Errorf("no refusal metric:\n%s", b)
	}
}

func mustKeyring(t testing.TB, s string) clusterkey.Keyring {
	t.Helper()
	r, err := clusterkey.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// A keyed gateway sends no client request to an address that cannot prove
// membership, however it was listed: 0 of 300 writes reach an HTTP server
// answering 200 to everything, every acknowledged write is in the cluster,
// keyed writes never fail because of it, and /nodes leaks no raw errors.
func TestTrustGatewaySendsNothingToImpostors(t *testing.T) {
	key := clusterkey.Generate()
	d := startKeyedDiscovery(t, key)
	n1 := startKeyedNode(t, "n1", key, d.HTTP)
	n2 := startKeyedNode(t, "n2", key, d.HTTP)
	im := newImpostor(t)
	notFound := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(notFound.Close)
	dead := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	gw := startKeyedGateway(t, key, []string{im.srv.URL, notFound.URL, dead, "http://no-such-host.invalid:8080"},
		"--discovery", d.HTTP)
	waitFor(t, 10*time.Second, func() error {
		b, err := gw.get("/health")
		if err == nil && !strings.Contains(string(b), `"healthy_nodes":2`) {
			err = fmt.Errorf("gateway health: %s", b)
		}
		return err
	}, true)

	const writes = 300
	var refused int
	for i := range writes {
		if err := gw.add(context.Background(), "hijack", 1); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		st, b := send(t, http.MethodPost, gw.HTTP+"/counters/keyed/increment",
			http.Header{"Idempotency-Key": {fmt.Sprintf("idem-%d", i)}}, nil)
		if st == http.StatusServiceUnavailable {
			refused++
		} else if st != http.StatusOK {
			t.Fatalf("keyed write %d: %d %s", i, st, b)
		}
	}
	if refused > 0 {
		t.Errorf("%d of %d keyed writes refused with 503", refused, writes)
	}
	if got := im.clients.Load(); got != 0 {
		t.Errorf("the impostor received %d client requests, want 0", got)
	}
	for _, n := range []*proc{n1, n2} {
		waitFor(t, 10*time.Second, func() error {
			for k, want := range map[string]int64{"hijack": writes, "keyed": writes} {
				if v, err := n.value(k); err != nil || v != want {
					return fmt.Errorf("%s: %s = %d (%v), want %d", n.name, k, v, err, want)
				}
			}
			return nil
		}, true)
	}
	b, err := gw.get("/nodes")
	if err != nil {
		t.Fatal(err)
	}
	var ns []struct {
		URL, Status, Error, Name string
		LastCheck                string `json:"last_check"`
	}
	json.Unmarshal(b, &ns)
	body := string(b)
	for _, n := range ns { // a port or a timestamp may well contain "404"
		body = strings.ReplaceAll(body, n.URL, "")
		body = strings.ReplaceAll(body, n.LastCheck, "")
	}
	for _, leak := range []string{"refused", "dial", "no such host", "404", "Not Found", "lookup", "answered", "invalid character"} {
		if strings.Contains(body, leak) {
			t.Errorf("/nodes mentions %q:\n%s", leak, b)
		}
	}
	for _, n := range ns {
		switch n.URL {
		case n1.HTTP, n2.HTTP:
			if n.Status != "healthy" {
				t.Errorf("%s: %+v, want healthy", n.URL, n)
			}
		default:
			if n.Status != "unproven" || n.Name != "" {
				t.Errorf("%s: %+v, want unproven and nameless", n.URL, n)
			}
		}
	}
}

// Without a key (development on loopback), fake ids registered once and
// left to expire never block keyed writes: an entry that never answered a
// health check is no key home.
func TestTrustExpiredFakesNeverBlockKeyedWrites(t *testing.T) {
	d := startKeyedDiscovery(t, "")
	n1 := startKeyedNode(t, "n1", "", d.HTTP)
	for i := range 4 {
		body := fmt.Sprintf(`{"id":"%016x","name":"fake%d","gossip_addr":"127.0.0.1:%d","http_addr":"127.0.0.1:%d"}`,
			0xfa00+i, i, freePort(t), freePort(t))
		if st, b := send(t, http.MethodPost, d.HTTP+"/register", nil, []byte(body)); st != http.StatusOK {
			t.Fatalf("register fake: %d %s", st, b)
		}
	}
	gw := startKeyedGateway(t, "", nil, "--discovery", d.HTTP)
	// The fakes expire from discovery (3s TTL) while the gateway runs.
	waitFor(t, 15*time.Second, func() error {
		if n := discoveryEntries(t, d); n != 1 {
			return fmt.Errorf("%d entries", n)
		}
		return nil
	}, true)
	for i := range 200 {
		st, b := send(t, http.MethodPost, gw.HTTP+"/counters/k/increment",
			http.Header{"Idempotency-Key": {fmt.Sprintf("dev-%d", i)}}, nil)
		if st != http.StatusOK {
			t.Fatalf("keyed write %d: %d %s", i, st, b)
		}
	}
	if v, err := n1.value("k"); err != nil || v != 200 {
		t.Fatalf("k = %d (%v), want 200", v, err)
	}
}

func TestTrustOpenListenersOffLoopbackAreRefused(t *testing.T) {
	for _, args := range [][]string{
		{"discovery", "--http-addr", fmt.Sprintf("0.0.0.0:%d", freePort(t))},
		{"gateway", "--http-addr", fmt.Sprintf("0.0.0.0:%d", freePort(t)), "--nodes", "127.0.0.1:1"},
	} {
		_, stderr, code := runCLI(t, nil, args...)
		if code != 2 || !strings.Contains(stderr, "--cluster-key") || !strings.Contains(stderr, "--insecure") {
			t.Errorf("%v: exit %d, stderr %q; want 2 and how to fix it", args, code, stderr)
		}
	}
}
