package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/dcounter/dcounter/internal/api"
	"github.com/dcounter/dcounter/internal/auth"
	"github.com/dcounter/dcounter/internal/clusterkey"
	"github.com/dcounter/dcounter/internal/memberproof"
	"github.com/dcounter/dcounter/internal/service"
)

const (
	tokRead  = "read-token-0123456789"
	tokWrite = "write-token-0123456789"
)

func tokenGuard(t *testing.T, ring clusterkey.Keyring) *auth.Guard {
	path := filepath.Join(t.TempDir(), "tokens")
	os.WriteFile(path, []byte(tokRead+" read reader\n"+tokWrite+" write app\n"), 0o600)
	f, err := auth.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return auth.NewGuard(f, ring, nil)
}

// authNode is a node's client API behind the real api.Authorize, recording
// who each request came from.
type authNode struct {
	mu   sync.Mutex
	seen map[string][]seenReq // path -> requests
	srv  *httptest.Server
}

type seenReq struct {
	id            auth.Identity
	authorization string
	identityHdr   string
}

func newAuthNode(t *testing.T, ring clusterkey.Keyring) *authNode {
	n := &authNode{seen: map[string][]seenReq{}}
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := auth.FromContext(r.Context())
		n.mu.Lock()
		n.seen[r.URL.Path] = append(n.seen[r.URL.Path], seenReq{id, r.Header.Get("Authorization"), r.Header.Get(auth.HeaderRole)})
		n.mu.Unlock()
		if r.URL.Path == "/health" {
			api.WriteJSON(w, 200, api.HealthFor(r.Context(), true, service.Health{Status: "ok", ID: "0000000000000001", Name: "n1"}))
			return
		}
		io.Copy(io.Discard, r.Body)
		api.WriteJSON(w, 200, api.CounterResponse{Key: "default", Value: 1})
	})
	// The node proves its membership as a real one does: outside client
	// authorisation, with its own key.
	prover := &memberproof.Prover{Cluster: "dcounter", ID: "0000000000000001", Name: "n1", Keyring: ring}
	n.srv = httptest.NewServer(memberproof.Mount(api.Authorize(inner, tokenGuard(t, ring)), prover))
	t.Cleanup(n.srv.Close)
	return n
}

func (n *authNode) last(path string) seenReq {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.seen[path]
	if len(s) == 0 {
		return seenReq{}
	}
	return s[len(s)-1]
}

func clientDo(t *testing.T, url, method, token string, hdr ...string) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(`{"amount":2}`))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func TestForwardedIdentityReachesNode(t *testing.T) {
	ring, _ := clusterkey.Parse(clusterkey.Generate())
	node := newAuthNode(t, ring)
	g, err := New(Config{Nodes: []string{node.srv.URL}, Keyring: ring})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	gw := httptest.NewServer(api.Authorize(g, tokenGuard(t, clusterkey.Keyring{})))
	defer gw.Close()

	// The gateway's own reads (the value /nodes shows) carry its signed
	// read identity.
	if got := g.Nodes()[0]; got.Name != "n1" || got.Value == nil {
		t.Fatalf("gateway's view of the node: %+v", got)
	}
	if s := node.last("/counter"); s.id != (auth.Identity{Role: auth.RoleRead, Name: "gateway", Via: auth.ViaForwarded}) {
		t.Fatalf("the gateway's value read arrived as %+v", s)
	}

	if code := clientDo(t, gw.URL+"/counters/a/increment", "POST", tokWrite); code != 200 {
		t.Fatalf("write through the gateway = %d", code)
	}
	s := node.last("/counters/a/increment")
	if s.id != (auth.Identity{Role: auth.RoleWrite, Name: "app", Via: auth.ViaForwarded}) || s.authorization != "" {
		t.Fatalf("node saw %+v; want the signed write identity and no token", s)
	}
	// A client's own identity headers never reach the node: the gateway
	// signs what it authenticated.
	forged := []string{auth.HeaderRole, "admin", auth.HeaderName, "root", auth.HeaderKey, ring.Primary().ID().String(), auth.HeaderMAC, "AAAA"}
	if code := clientDo(t, gw.URL+"/counters/b", "GET", tokRead, forged...); code != 200 {
		t.Fatalf("read = %d", code)
	}
	if s := node.last("/counters/b"); s.id.Role != auth.RoleRead || s.id.Name != "reader" {
		t.Fatalf("node saw %+v; want the reader", s)
	}
	// The gateway itself refuses what the role does not allow.
	if code := clientDo(t, gw.URL+"/counters/a/increment", "POST", tokRead); code != 403 {
		t.Fatalf("read token writing = %d, want 403", code)
	}
	if code := clientDo(t, gw.URL+"/counters/a/increment", "POST", "", forged...); code != 401 {
		t.Fatalf("forged headers without a token = %d, want 401", code)
	}
}

func TestTokenPassedOnWithoutClusterKey(t *testing.T) {
	node := newAuthNode(t, clusterkey.Keyring{})
	g, err := New(Config{Nodes: []string{node.srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	gw := httptest.NewServer(api.Authorize(g, tokenGuard(t, clusterkey.Keyring{})))
	defer gw.Close()
	// Without a key the gateway cannot vouch for itself: /health works
	// (the node is healthy) but reading "default" does not.
	if got := g.Nodes()[0]; got.Status != "healthy" || got.Value != nil {
		t.Fatalf("gateway's view of the node: %+v", got)
	}
	if code := clientDo(t, gw.URL+"/counters/a/increment", "POST", tokWrite); code != 200 {
		t.Fatalf("write = %d", code)
	}
	if s := node.last("/counters/a/increment"); s.id.Via != auth.ViaToken || s.authorization != "Bearer "+tokWrite {
		t.Fatalf("node saw %+v; want the client's own token", s)
	}
	// A gateway holding another cluster's key is not believed.
	other, _ := clusterkey.Parse(clusterkey.Generate())
	g2, err := New(Config{Nodes: []string{node.srv.URL}, Keyring: other})
	if err != nil {
		t.Fatal(err)
	}
	defer g2.Close()
	gw2 := httptest.NewServer(api.Authorize(g2, tokenGuard(t, clusterkey.Keyring{})))
	defer gw2.Close()
	// Nor does it believe the node: the node cannot prove membership of
	// the gateway's cluster, so the gateway sends it nothing at all.
	node.mu.Lock()
	before := len(node.seen["/counters/a/increment"])
	node.mu.Unlock()
	if code := clientDo(t, gw2.URL+"/counters/a/increment", "POST", tokWrite); code != 503 {
		t.Fatalf("write through a gateway of another cluster = %d, want 503 (no proven node)", code)
	}
	node.mu.Lock()
	after := len(node.seen["/counters/a/increment"])
	node.mu.Unlock()
	if after != before {
		t.Fatal("a gateway of another cluster sent a write to a node that never proved itself to it")
	}
	// The node itself refuses an identity signed with a foreign key.
	req, _ := http.NewRequest("POST", node.srv.URL+"/counters/a/increment", strings.NewReader(`{"amount":2}`))
	auth.SignForwarded(req, other.Primary(), auth.Identity{Role: auth.RoleWrite, Name: "app"}, []byte(`{"amount":2}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("identity signed with a foreign key = %d at the node, want 401", resp.StatusCode)
	}
}
