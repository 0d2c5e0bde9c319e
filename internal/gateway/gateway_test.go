package gateway

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestConfigRefusesNegativeValues: a negative duration or count is an
// error naming the setting, never silently the default.
func TestConfigRefusesNegativeValues(t *testing.T) {
	for name, cfg := range map[string]Config{
		"health-interval": {Nodes: []string{"127.0.0.1:1"}, HealthInterval: -time.Second},
		"proxy-timeout":   {Nodes: []string{"127.0.0.1:1"}, ProxyTimeout: -1},
		"max-tries":       {Nodes: []string{"127.0.0.1:1"}, MaxTries: -1},
	} {
		g, err := New(cfg)
		if err == nil {
			g.Close()
		}
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), name) {
			t.Errorf("%s negative: %v, want ErrConfig naming it", name, err)
		}
	}
}

// TestRunServesUntilItsContextEnds: Run serves the API and the dashboard
// on its listener, and once its context ends it stops, closes the
// listener and the gateway, and returns nil.
func TestRunServesUntilItsContextEnds(t *testing.T) {
	n := newFakeNode(t, "a")
	g, err := New(Config{Nodes: []string{n.URL()}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx, ln) }()
	base := "http://" + ln.Addr().String()
	for _, path := range []string{"/health", "/ui/"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s", path, resp.Status)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after its context ended: %v", err)
	}
	if _, err := http.Get(base + "/health"); err == nil {
		t.Fatal("the listener still answers after Run returned")
	}
}
