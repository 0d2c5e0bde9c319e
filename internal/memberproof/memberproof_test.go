package memberproof

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/dcounter/dcounter/internal/clusterkey"
	"github.com/dcounter/dcounter/internal/clusterkey/clusterkeytest"
)

// serve runs p over real TCP and returns its base URL.
func serve(t *testing.T, p *Prover) string {
	t.Helper()
	hs := httptest.NewServer(Mount(http.NotFoundHandler(), p))
	t.Cleanup(hs.Close)
	return hs.URL
}

func verifier(keys clusterkey.Keyring) *Verifier {
	return &Verifier{Cluster: "c1", Keyring: keys, HTTP: http.DefaultClient}
}

func TestMemberProvesItself(t *testing.T) {
	keys := clusterkeytest.Ring(t, 1)
	base := serve(t, &Prover{Cluster: "c1", ID: "00000000000000a1", Name: "n1", Keyring: keys})
	m, err := verifier(keys).Prove(context.Background(), base)
	if err != nil {
		t.Fatalf("Prove: %v", err)
	}
	if m.ID != "00000000000000a1" || m.Name != "n1" || m.Key != keys.Primary().ID() {
		t.Fatalf("member %+v", m)
	}
	// "localhost" reaches the node on loopback: it may sign for it.
	lh := strings.Replace(base, "127.0.0.1", "localhost", 1)
	if _, err := verifier(keys).Prove(context.Background(), lh); err != nil {
		t.Fatalf("Prove via localhost: %v", err)
	}
}

func TestRotationKeysAreAccepted(t *testing.T) {
	base := serve(t, &Prover{Cluster: "c1", ID: "a", Keyring: clusterkeytest.Ring(t, 2, 1)})
	if _, err := verifier(clusterkeytest.Ring(t, 1, 2)).Prove(context.Background(), base); err != nil {
		t.Fatalf("prover's primary is the verifier's second key: %v", err)
	}
}

func TestNonMembersFail(t *testing.T) {
	ctx := context.Background()
	keys := clusterkeytest.Ring(t, 1)
	ok200 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"ok":true}`)) // answers 200 to everything
	}))
	t.Cleanup(ok200.Close)
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	for _, c := range []struct {
		name, base string
		want       error
	}{
		{"200 to everything", ok200.URL, ErrNotMember},
		{"other key", serve(t, &Prover{Cluster: "c1", ID: "a", Keyring: clusterkeytest.Ring(t, 9)}), ErrNotMember},
		{"other cluster", serve(t, &Prover{Cluster: "c2", ID: "a", Keyring: keys}), ErrNotMember},
		{"no key", serve(t, &Prover{Cluster: "c1", ID: "a"}), ErrNotMember},
		{"nothing listening", down.URL, ErrUnreachable},
	} {
		if _, err := verifier(keys).Prove(ctx, c.base); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

// A relay at another address cannot pass a real node's proof off as its
// own: forwarded with the relay's Host, the node refuses to sign; with the
// node's own Host, the proof does not verify for the relay's address.
func TestRelayedChallengeFails(t *testing.T) {
	keys := clusterkeytest.Ring(t, 1)
	node := serve(t, &Prover{Cluster: "c1", ID: "a", Keyring: keys})
	for _, keepHost := range []bool{true, false} {
		relay := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			req, _ := http.NewRequest(r.Method, node+r.URL.Path, r.Body)
			if keepHost {
				req.Host = r.Host
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				w.WriteHeader(http.StatusBadGateway)
				return
			}
			defer resp.Body.Close()
			w.WriteHeader(resp.StatusCode)
			io.Copy(w, resp.Body)
		}))
		t.Cleanup(relay.Close)
		if _, err := verifier(keys).Prove(context.Background(), relay.URL); !errors.Is(err, ErrNotMember) {
			t.Errorf("relay keeping Host=%v: %v, want ErrNotMember", keepHost, err)
		}
	}
}

func TestAdvertisedHostIsSignedFor(t *testing.T) {
	keys := clusterkeytest.Ring(t, 1)
	p := &Prover{Cluster: "c1", ID: "a", Keyring: keys, Advertised: []string{"node1.example:8080"}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: p}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	// Dial the listener whatever the URL's host says.
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", ln.Addr().String())
	}}
	v := &Verifier{Cluster: "c1", Keyring: keys, HTTP: &http.Client{Transport: tr}}
	if _, err := v.Prove(context.Background(), "http://node1.example:8080"); err != nil {
		t.Fatalf("advertised name: %v", err)
	}
	if _, err := v.Prove(context.Background(), "http://node2.example:8080"); !errors.Is(err, ErrNotMember) {
		t.Fatalf("unadvertised name: %v, want ErrNotMember", err)
	}
}

func TestProverRejectsBadRequests(t *testing.T) {
	p := &Prover{Cluster: "c1", ID: "a", Keyring: clusterkeytest.Ring(t, 1)}
	for _, c := range []struct {
		method, body string
		want         int
	}{
		{http.MethodGet, "", http.StatusMethodNotAllowed},
		{http.MethodPost, "not json", http.StatusBadRequest},
		{http.MethodPost, `{"challenge":"short"}`, http.StatusBadRequest},
		{http.MethodPost, strings.Repeat("x", maxBody+10), http.StatusBadRequest},
	} {
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, httptest.NewRequest(c.method, Path, strings.NewReader(c.body)))
		if rec.Code != c.want {
			t.Errorf("%s %.20q: %d, want %d", c.method, c.body, rec.Code, c.want)
		}
	}
}

// TestGoldenMAC freezes the proof's MAC: it is on the wire between
// gateways and nodes of different versions. The value was computed
// independently (Python's hmac with an RFC 5869 HKDF).
func TestGoldenMAC(t *testing.T) {
	k := clusterkeytest.Ring(t, 1).Primary()
	ch := bytes.Repeat([]byte{7}, ChallengeSize)
	got := hex.EncodeToString(MAC(k, "dcounter", ch, "127.0.0.1:8080", "00000000000000a1", "n1"))
	const want = "785a1ac1dc9e2d467925b671b400d06ef5fe3af5a04195dfc48cbc4deed405e5"
	if got != want {
		t.Fatalf("MAC = %s, want %s", got, want)
	}
}
