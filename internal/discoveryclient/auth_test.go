package discoveryclient

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/clock"
	"github.com/dcounter/dcounter/internal/clusterkey/clusterkeytest"
)

func TestKeyedClientRegistersHeartbeatsAndReads(t *testing.T) {
	clk := clock.NewFake(t0)
	keys := clusterkeytest.Ring(t, 1)
	h := &swapHandler{}
	h.cur.Store(newServer(t, clk, serverConfig{Keyring: keys}))
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	self, other := testEntry(1), testEntry(2)
	c := New(Config{URLs: []string{hs.URL}, Self: self, Keyring: keys})
	o := New(Config{URLs: []string{hs.URL}, Self: other, Keyring: keys})
	ctx := context.Background()
	if err := c.Register(ctx); err != nil {
		t.Fatalf("Register: %v", err)
	}
	if err := o.Register(ctx); err != nil {
		t.Fatalf("Register: %v", err)
	}
	got, err := c.Peers(ctx)
	if err != nil {
		t.Fatalf("Peers: %v", err)
	}
	wantEntries(t, got, seenAt(other, t0))

	// A restarted server forgets us; the heartbeat's signed 404 makes us
	// register again.
	h.cur.Swap(newServer(t, clk, serverConfig{Keyring: keys})).Close()
	h.requests()
	clk.Advance(time.Second)
	if err := c.Heartbeat(ctx); err != nil {
		t.Fatalf("Heartbeat: %v", err)
	}
	want := []string{"POST /challenge", "POST /heartbeat", "POST /challenge", "POST /register"}
	if got := h.requests(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("requests %q, want %q", got, want)
	}
	wantEntries(t, h.cur.Load().Peers(), seenAt(self, t0.Add(time.Second)))
}

func TestKeyMismatchesAreClearErrors(t *testing.T) {
	clk := clock.NewFake(t0)
	keyed := startServer(t, clk, serverConfig{Keyring: clusterkeytest.Ring(t, 1)})
	open := startServer(t, clk, serverConfig{})
	ctx := context.Background()

	err := newClient([]string{keyed.hs.URL}, testEntry(1)).Register(ctx)
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("unkeyed client, keyed server: %v, want the 401", err)
	}
	err = New(Config{URLs: []string{keyed.hs.URL}, Self: testEntry(1), Keyring: clusterkeytest.Ring(t, 2)}).Register(ctx)
	if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "--cluster-key") {
		t.Fatalf("wrong key: %v, want ErrAuth naming --cluster-key", err)
	}
	_, err = New(Config{URLs: []string{open.hs.URL}, Keyring: clusterkeytest.Ring(t, 1)}).Peers(ctx)
	if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "no --cluster-key") {
		t.Fatalf("keyed client, unkeyed server: %v, want ErrAuth", err)
	}
	if n := keyed.entries(); n != 0 {
		t.Fatalf("%d entries, want 0", n)
	}
}

// A server (or anyone on the path) without the key cannot answer for one
// that has it: its peer list is refused.
func TestForgedAnswerIsRefused(t *testing.T) {
	keys := clusterkeytest.Ring(t, 1)
	var forged bool
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/challenge" {
			w.Write([]byte(`{"nonce":"AAAAAAAAAAAAAAAAAAAAAA"}`))
			return
		}
		forged = true
		w.Header().Set("Dcounter-Response-Mac", strings.Repeat("A", 43))
		w.Write([]byte(`[{"id":"d1c0000000000009","name":"evil","gossip_addr":"10.6.6.6:7946","http_addr":"10.6.6.6:80"}]`))
	}))
	t.Cleanup(fake.Close)
	ps, err := New(Config{URLs: []string{fake.URL}, Keyring: keys}).Peers(context.Background())
	if !forged || !errors.Is(err, ErrAuth) || len(ps) != 0 {
		t.Fatalf("forged peer list: %+v, %v; want ErrAuth and nothing", ps, err)
	}
}
