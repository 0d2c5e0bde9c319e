package transport

import (
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/clusterkey"
	"github.com/dcounter/dcounter/internal/clusterkey/clusterkeytest"
)

// benchModes are the two ways to run gossip, compared in one run.
func benchModes(b *testing.B) []struct {
	name string
	keys clusterkey.Keyring
} {
	return []struct {
		name string
		keys clusterkey.Keyring
	}{{"plaintext", clusterkey.Keyring{}}, {"noise", clusterkeytest.Ring(b, 1)}}
}

// BenchmarkHandshake measures setting up one connection: a loopback TCP
// dial plus the handshake, both sides in this process (so allocs/op counts
// the dialer's and the acceptor's).
func BenchmarkHandshake(b *testing.B) {
	for _, mode := range benchModes(b) {
		b.Run(mode.name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			acceptor := handshaker{cluster: "bench", keys: mode.keys, timeout: 5 * time.Second}
			dialer := handshaker{cluster: "bench", addr: "127.0.0.1:1", keys: mode.keys, timeout: 5 * time.Second}
			errs := make(chan error, 1)
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					_, _, err = acceptor.accept(c)
					c.Close()
					errs <- err
				}
			}()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				if _, err := dialer.dial(c); err != nil {
					b.Fatal(err)
				}
				if err := <-errs; err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
}

// BenchmarkThroughput measures one-way gossip throughput between two
// transports over loopback TCP, in messages of 1 KiB and 64 KiB.
func BenchmarkThroughput(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10} {
		for _, mode := range benchModes(b) {
			b.Run(fmt.Sprintf("%s/%dKiB", mode.name, size>>10), func(b *testing.B) {
				var got atomic.Int64
				recv, err := Listen(Config{BindAddr: "127.0.0.1:0", Cluster: "bench", Keys: mode.keys}, func(string, []byte) { got.Add(1) })
				if err != nil {
					b.Fatal(err)
				}
				defer recv.Close()
				send, err := Listen(Config{BindAddr: "127.0.0.1:0", Cluster: "bench", Keys: mode.keys}, func(string, []byte) {})
				if err != nil {
					b.Fatal(err)
				}
				defer send.Close()
				msg := pattern(1, size)
				// Connect first, so the handshake is not measured here.
				send.Send(recv.Addr(), msg)
				waitFor(b, "first message", func() bool { return got.Load() == 1 })
				got.Store(0)

				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				start := time.Now()
				n := 0
				for b.Loop() {
					for {
						err := send.Send(recv.Addr(), msg)
						if err == nil {
							break
						}
						if !errors.Is(err, ErrQueueFull) {
							b.Fatal(err)
						}
						time.Sleep(10 * time.Microsecond) // queue full: let the writer drain it
					}
					n++
				}
				for deadline := time.Now().Add(time.Minute); got.Load() < int64(n); time.Sleep(100 * time.Microsecond) {
					if time.Now().After(deadline) {
						s := send.Stats()
						b.Fatalf("%d of %d messages arrived; sender %+v", got.Load(), n, s)
					}
				}
				b.ReportMetric(float64(n)/time.Since(start).Seconds(), "msgs/s")
			})
		}
	}
}
