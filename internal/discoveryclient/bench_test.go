package discoveryclient

import (
	"context"
	"net/http"
	"testing"

	"github.com/dcounter/dcounter/internal/clock"
	"github.com/dcounter/dcounter/internal/clusterkey"
	"github.com/dcounter/dcounter/internal/clusterkey/clusterkeytest"
)

// BenchmarkHeartbeat measures one node's heartbeat (and peer read) to a
// discovery server over loopback TCP, without and with the cluster key:
// with it, each request is a challenge round trip plus the signed request,
// and both sides compute HMACs.
//
//	go test -run '^$' -bench 'Heartbeat|Peers' -benchtime 2s ./internal/discoveryclient/
func BenchmarkHeartbeat(b *testing.B) {
	for _, keyed := range []bool{false, true} {
		name := "open"
		if keyed {
			name = "keyed"
		}
		b.Run(name, func(b *testing.B) {
			c, _ := benchClient(b, keyed)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := c.Heartbeat(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkPeers(b *testing.B) {
	for _, keyed := range []bool{false, true} {
		name := "open"
		if keyed {
			name = "keyed"
		}
		b.Run(name, func(b *testing.B) {
			c, _ := benchClient(b, keyed)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := c.Peers(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchClient registers a client with a server holding 5 other entries.
func benchClient(b *testing.B, keyed bool) (*Client, *testServer) {
	var keys clusterkey.Keyring
	if keyed {
		keys = clusterkeytest.Ring(b, 1)
	}
	ts := startServer(b, clock.NewFake(t0), serverConfig{Keyring: keys})
	tr := &http.Transport{MaxIdleConnsPerHost: 4}
	b.Cleanup(tr.CloseIdleConnections)
	for i := 2; i < 7; i++ {
		if err := New(Config{URLs: []string{ts.hs.URL}, Self: testEntry(i), Keyring: keys}).Register(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	c := New(Config{URLs: []string{ts.hs.URL}, Self: testEntry(1), Keyring: keys, HTTP: &http.Client{Transport: tr}})
	if err := c.Register(context.Background()); err != nil {
		b.Fatal(err)
	}
	return c, ts
}
