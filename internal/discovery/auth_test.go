package discovery

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/clock"
	"github.com/dcounter/dcounter/internal/clusterkey"
	"github.com/dcounter/dcounter/internal/clusterkey/clusterkeytest"
)

// nonce asks ts for a challenge.
func (ts *testServer) nonce() Nonce {
	ts.t.Helper()
	r := ts.do(http.MethodPost, "/challenge", "")
	if r.status != http.StatusOK {
		ts.t.Fatalf("POST /challenge: %d %s", r.status, r.body)
	}
	var ch struct{ Nonce string }
	if err := json.Unmarshal(r.body, &ch); err != nil {
		ts.t.Fatal(err)
	}
	n, err := ParseNonce(ch.Nonce)
	if err != nil {
		ts.t.Fatal(err)
	}
	return n
}

// signed builds a request signed with k over a fresh nonce.
func (ts *testServer) signed(k clusterkey.Key, method, path, body string) *http.Request {
	ts.t.Helper()
	n := ts.nonce()
	req, err := http.NewRequest(method, ts.hs.URL+path, strings.NewReader(body))
	if err != nil {
		ts.t.Fatal(err)
	}
	req.Header.Set("Authorization", Authorization(k, n, RequestMAC(k, method, path, n, []byte(body))))
	return req
}

// send sends req (which may be sent again: its body is rebuilt).
func (ts *testServer) send(req *http.Request, body string) response {
	ts.t.Helper()
	req = req.Clone(req.Context())
	req.Body = io.NopCloser(strings.NewReader(body))
	resp, err := ts.hs.Client().Do(req)
	if err != nil {
		ts.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, b}
}

func TestKeyedServerRefusesUnauthenticatedRequests(t *testing.T) {
	ts := startServer(t, clock.NewFake(t0), Config{Keyring: clusterkeytest.Ring(t, 1)})
	e := testEntry(1)
	for _, c := range []struct{ method, path, body string }{
		{http.MethodPost, "/register", bodyOf(e)},
		{http.MethodPost, "/heartbeat", bodyOf(e)},
		{http.MethodGet, "/peers", ""},
	} {
		r := ts.do(c.method, c.path, c.body)
		wantError(t, r, http.StatusUnauthorized, "unauthenticated")
		if got := r.header.Get("WWW-Authenticate"); got != AuthScheme {
			t.Errorf("%s: WWW-Authenticate %q", c.path, got)
		}
	}
	// Garbage in the header is refused just the same.
	for _, h := range []string{"Bearer x", AuthScheme + " key=zz", AuthScheme + " key=0011223344556677, nonce=AAAA, mac=AAAA",
		AuthScheme + " key=0011223344556677, nonce=" + strings.Repeat("A", 22) + ", mac=" + strings.Repeat("A", 43)} {
		req, _ := http.NewRequest(http.MethodPost, ts.hs.URL+"/register", nil)
		req.Header.Set("Authorization", h)
		wantError(t, ts.send(req, bodyOf(e)), http.StatusUnauthorized, "unauthenticated")
	}
	if n := ts.entries(); n != 0 {
		t.Fatalf("registry holds %d entries after unauthenticated requests, want 0", n)
	}
}

func TestSignedRegistrationIsAcceptedAndAnswerSigned(t *testing.T) {
	keys := clusterkeytest.Ring(t, 1)
	k := keys.Primary()
	clk := clock.NewFake(t0)
	ts := startServer(t, clk, Config{Keyring: keys})
	e := testEntry(1)
	n := ts.nonce()
	req, _ := http.NewRequest(http.MethodPost, ts.hs.URL+"/register", nil)
	req.Header.Set("Authorization", Authorization(k, n, RequestMAC(k, http.MethodPost, "/register", n, []byte(bodyOf(e)))))
	r := ts.send(req, bodyOf(e))
	if r.status != http.StatusOK {
		t.Fatalf("signed register: %d %s", r.status, r.body)
	}
	mac, _ := base64.RawURLEncoding.DecodeString(r.header.Get(ResponseMACHeader))
	if !bytes.Equal(mac, ResponseMAC(k, n, http.StatusOK, r.body)) {
		t.Fatalf("answer MAC %q does not verify", r.header.Get(ResponseMACHeader))
	}
	r = ts.send(ts.signed(k, http.MethodGet, "/peers", ""), "")
	var es []Entry
	if r.status != http.StatusOK || json.Unmarshal(r.body, &es) != nil {
		t.Fatalf("signed peers: %d %s", r.status, r.body)
	}
	wantEntries(t, es, seenAt(e, t0))
}

func TestCapturedRequestReplayedIsRefused(t *testing.T) {
	keys := clusterkeytest.Ring(t, 1)
	clk := clock.NewFake(t0)
	ts := startServer(t, clk, Config{Keyring: keys})
	real, forged := testEntry(1), testEntry(1)
	forged.HTTPAddr = "10.66.6.6:80"

	// An attacker records a registration carrying forged addresses — say
	// the node's own earlier registration — and sends it again later.
	captured := ts.signed(keys.Primary(), http.MethodPost, "/register", bodyOf(forged))
	if r := ts.send(captured, bodyOf(forged)); r.status != http.StatusOK {
		t.Fatalf("first send: %d %s", r.status, r.body)
	}
	if r := ts.send(ts.signed(keys.Primary(), http.MethodPost, "/register", bodyOf(real)), bodyOf(real)); r.status != http.StatusOK {
		t.Fatalf("real register: %d %s", r.status, r.body)
	}
	for _, after := range []time.Duration{0, time.Second, time.Hour} {
		clk.Advance(after)
		wantError(t, ts.send(captured, bodyOf(forged)), http.StatusUnauthorized, "nonce")
	}
	// Nor can the nonce carry another body.
	wantError(t, ts.send(captured, bodyOf(testEntry(2))), http.StatusUnauthorized, "nonce")
	if ps := ts.srv.Peers(); len(ps) > 0 && ps[0].HTTPAddr != real.HTTPAddr {
		t.Fatalf("replay changed the entry: %+v", ps)
	}
}

func TestNonceIsSpentByAFailedAttempt(t *testing.T) {
	keys := clusterkeytest.Ring(t, 1)
	ts := startServer(t, clock.NewFake(t0), Config{Keyring: keys})
	k := keys.Primary()
	n := ts.nonce()
	e := testEntry(1)
	tampered, _ := http.NewRequest(http.MethodPost, ts.hs.URL+"/register", nil)
	tampered.Header.Set("Authorization", Authorization(k, n, RequestMAC(k, http.MethodPost, "/register", n, []byte(bodyOf(e)))))
	// The body changed after signing: refused, and the nonce is gone, so
	// the untouched request fails too.
	wantError(t, ts.send(tampered, bodyOf(testEntry(2))), http.StatusUnauthorized, "bad MAC")
	wantError(t, ts.send(tampered, bodyOf(e)), http.StatusUnauthorized, "nonce")
	// The path is signed too.
	n = ts.nonce()
	other, _ := http.NewRequest(http.MethodPost, ts.hs.URL+"/heartbeat", nil)
	other.Header.Set("Authorization", Authorization(k, n, RequestMAC(k, http.MethodPost, "/register", n, []byte(bodyOf(e)))))
	wantError(t, ts.send(other, bodyOf(e)), http.StatusUnauthorized, "bad MAC")
	if n := ts.entries(); n != 0 {
		t.Fatalf("%d entries, want 0", n)
	}
}

func TestExpiredNonceIsRefused(t *testing.T) {
	keys := clusterkeytest.Ring(t, 1)
	clk := clock.NewFake(t0)
	ts := startServer(t, clk, Config{Keyring: keys})
	req := ts.signed(keys.Primary(), http.MethodPost, "/register", bodyOf(testEntry(1)))
	clk.Advance(NonceTTL + time.Millisecond)
	wantError(t, ts.send(req, bodyOf(testEntry(1))), http.StatusUnauthorized, "expired")
}

func TestWrongKeyIsRefusedAndRotationKeysAccepted(t *testing.T) {
	ts := startServer(t, clock.NewFake(t0), Config{Keyring: clusterkeytest.Ring(t, 2, 1)})
	other := clusterkeytest.Ring(t, 3).Primary()
	wantError(t, ts.send(ts.signed(other, http.MethodPost, "/register", bodyOf(testEntry(1))), bodyOf(testEntry(1))),
		http.StatusUnauthorized, "not in this server's keyring")
	old := clusterkeytest.Ring(t, 1).Primary() // second key of the server's ring
	if r := ts.send(ts.signed(old, http.MethodPost, "/register", bodyOf(testEntry(1))), bodyOf(testEntry(1))); r.status != http.StatusOK {
		t.Fatalf("request signed with the ring's second key: %d %s", r.status, r.body)
	}
}

func TestChallengesAreBoundedPerSourceAndInTotal(t *testing.T) {
	ts := startServer(t, clock.NewFake(t0), Config{Keyring: clusterkeytest.Ring(t, 1)})
	for range MaxNoncesPerSource {
		ts.nonce()
	}
	wantError(t, ts.do(http.MethodPost, "/challenge", ""), http.StatusTooManyRequests, "too many outstanding")

	// Many sources: the store never exceeds MaxNonces.
	for i := range MaxNonces + 100 {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/challenge", nil)
		req.RemoteAddr = fmt.Sprintf("10.%d.%d.1:1", i/250, i%250)
		ts.srv.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("challenge %d: %d %s", i, rec.Code, rec.Body)
		}
	}
	ts.srv.mu.Lock()
	n := ts.srv.nonces.len()
	ts.srv.mu.Unlock()
	if n > MaxNonces {
		t.Fatalf("%d outstanding nonces, bound %d", n, MaxNonces)
	}
}

func TestUnkeyedServerIssuesNoChallenges(t *testing.T) {
	ts := startServer(t, clock.NewFake(t0), Config{})
	wantError(t, ts.do(http.MethodPost, "/challenge", ""), http.StatusNotFound, "no --cluster-key")
}

func TestUnkeyedLiveIDStaysWithItsSource(t *testing.T) {
	clk := clock.NewFake(t0)
	ts := startServer(t, clk, Config{})
	e := testEntry(1)
	ts.register(e)
	forged := e
	forged.HTTPAddr = "10.66.6.6:80"
	for _, path := range []string{"/register", "/heartbeat"} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(bodyOf(forged)))
		req.RemoteAddr = "10.66.6.6:4444"
		ts.srv.ServeHTTP(rec, req)
		if rec.Code != http.StatusConflict {
			t.Fatalf("%s of a live id from another address: %d %s, want 409", path, rec.Code, rec.Body)
		}
	}
	wantEntries(t, ts.peers(), seenAt(e, t0))
	// Once expired, the id is free again.
	clk.Advance(testTTL + time.Millisecond)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/register", strings.NewReader(bodyOf(forged)))
	req.RemoteAddr = "10.66.6.6:4444"
	ts.srv.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("register of an expired id: %d %s", rec.Code, rec.Body)
	}
}

func TestEntriesAreBoundedPerSource(t *testing.T) {
	ts := startServer(t, clock.NewFake(t0), Config{MaxPerSource: 3})
	for i := range 3 {
		ts.register(testEntry(i))
	}
	wantError(t, ts.do(http.MethodPost, "/register", bodyOf(testEntry(3))), http.StatusTooManyRequests, "this source")
	// Another source still has room.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/register", strings.NewReader(bodyOf(testEntry(4))))
	req.RemoteAddr = "10.1.1.1:1"
	ts.srv.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("other source: %d %s", rec.Code, rec.Body)
	}
	r := ts.do(http.MethodGet, "/metrics", "")
	if !strings.Contains(string(r.body), `dcounter_discovery_refused_total{reason="source_full"} 1`) {
		t.Fatalf("metrics lack the refusal:\n%s", r.body)
	}
}

func TestParseAuthorizationNeverPanics(t *testing.T) {
	for _, h := range []string{"", AuthScheme, AuthScheme + " ", AuthScheme + " ,,,", AuthScheme + " key", AuthScheme + " =,=,="} {
		if _, err := parseAuthorization(h); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("%q: %v", h, err)
		}
	}
}

// TestGoldenMACs freezes the request and answer MACs: they are on the wire
// between nodes and servers of different versions. The values were computed
// independently (Python's hmac with an RFC 5869 HKDF).
func TestGoldenMACs(t *testing.T) {
	k := clusterkeytest.Ring(t, 1).Primary()
	var n Nonce
	for i := range n {
		n[i] = 5
	}
	for _, c := range []struct{ name, got, want string }{
		{"request", fmt.Sprintf("%x", RequestMAC(k, "POST", "/register", n, []byte(`{"id":"x"}`))),
			"3c844dd32e4183607c75f21532d9fb254342911691c1130525bc049e3ce94f46"},
		{"response", fmt.Sprintf("%x", ResponseMAC(k, n, 200, []byte("{\"ttl_ms\":5000}\n"))),
			"37facff8e6169bf05c3ab9785f9a10c89c3b09cf9beea8400329c559758042b0"},
		{"header", Authorization(k, n, make([]byte, 32)),
			"DCounter-HMAC-SHA256 key=b5410098f4f34594, nonce=BQUFBQUFBQUFBQUFBQUFBQ, mac=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %s, want %s", c.name, c.got, c.want)
		}
	}
}

// Refusals are logged at most once a second of the server's clock, with a
// count: anyone can send them, and the log is not theirs to fill.
func TestRefusalsAreLoggedAtARateLimit(t *testing.T) {
	var buf syncBuffer
	clk := clock.NewFake(t0)
	ts := startServer(t, clk, Config{Keyring: clusterkeytest.Ring(t, 1), Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	for range 100 {
		ts.do(http.MethodPost, "/register", bodyOf(testEntry(1)))
	}
	if n := strings.Count(buf.String(), "requests refused"); n != 1 {
		t.Fatalf("%d log lines for 100 refusals in one second, want 1:\n%s", n, buf.String())
	}
	clk.Advance(time.Second)
	ts.do(http.MethodPost, "/register", bodyOf(testEntry(1)))
	if n := strings.Count(buf.String(), "requests refused"); n != 2 || !strings.Contains(buf.String(), "count=100") {
		t.Fatalf("after a second: %d lines, want 2, the second counting 100:\n%s", n, buf.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
