package respserver

import (
	"context"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/service"
)

// benchService is a service that does no I/O and allocates nothing for a
// key it has seen: what is measured is the front end.
type benchService struct {
	mu     sync.Mutex
	vals   map[string]int64
	groups int
}

func (b *benchService) Get(ctx context.Context, key string) (service.Counter, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	v, ok := b.vals[key]
	return service.Counter{Key: key, Value: v, Live: ok}, nil
}

func (b *benchService) Add(ctx context.Context, key string, delta int64, w service.WriteOptions) (service.Counter, bool, error) {
	panic("not used")
}

func (b *benchService) Delete(ctx context.Context, key string, idem string) (bool, bool, error) {
	panic("not used")
}

func (b *benchService) SetTTL(ctx context.Context, key string, ttl time.Duration, idem string) (service.Counter, bool, error) {
	panic("not used")
}

func (b *benchService) Writes(ctx context.Context, ws []service.Write, out []service.WriteResult) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.groups++
	for i := range ws {
		b.vals[ws[i].Key] += ws[i].Delta
		out[i] = service.WriteResult{Counter: service.Counter{Key: ws[i].Key, Value: b.vals[ws[i].Key], Live: true}, Applied: true}
	}
}

func (b *benchService) List(ctx context.Context, req service.ListRequest) (service.ListPage, error) {
	return service.ListPage{}, nil
}

func (b *benchService) Nodes(ctx context.Context) ([]service.Member, error) { return nil, nil }

func (b *benchService) Health(ctx context.Context) (bool, service.Health) {
	return true, service.Health{}
}

// BenchmarkPipelinedIncr: rounds of 16 pipelined INCRs over one
// connection (net.Pipe), each round one service.Writes group. allocs/cmd
// is the server's and the codec's allocation per command.
func BenchmarkPipelinedIncr(b *testing.B) {
	const depth = 16
	svc := &benchService{vals: map[string]int64{}}
	srv := New(Config{Service: svc, Log: slog.New(slog.DiscardHandler)})
	cli, sc := net.Pipe()
	srv.start(sc)
	defer func() {
		cli.Close()
		srv.Shutdown(context.Background())
	}()

	req := []byte(strings.Repeat(enc("INCR", "counter:bench"), depth))
	buf := make([]byte, 4096)
	round := func() {
		if _, err := cli.Write(req); err != nil {
			b.Fatal(err)
		}
		lines := 0
		for lines < depth {
			n, err := cli.Read(buf)
			if err != nil {
				b.Fatal(err)
			}
			for _, c := range buf[:n] {
				if c == '\n' {
					lines++
				}
			}
		}
	}
	round() // warm up: the key's string, the buffers
	var before, after runtime.MemStats
	b.ReportAllocs()
	b.ResetTimer()
	runtime.ReadMemStats(&before)
	for range b.N {
		round()
	}
	runtime.ReadMemStats(&after)
	b.StopTimer()
	cmds := float64(b.N * depth)
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/cmds, "allocs/cmd")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/cmds, "ns/cmd")
	if svc.groups < b.N {
		b.Fatalf("%d groups for %d rounds", svc.groups, b.N)
	}
}
