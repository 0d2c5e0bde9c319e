package e2e

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// allowOne is the README's fixed-window rate limiter: it counts one request
// in window's key and reports whether the request is within limit. The
// write and the window's expiry go in one durable record (DC.INCRBY … EX:
// the expiry is set only if the window has none yet).
func allowOne(ctx context.Context, rdb *redis.Client, key string, limit int64) (bool, error) {
	n, err := rdb.Do(ctx, "DC.INCRBY", key, 1, "EX", 60).Int64()
	if err != nil {
		return false, err
	}
	return n <= limit, nil
}

// allowOneTx is the same limiter as any Redis client writes it: INCR and
// EXPIRE NX in one MULTI/EXEC.
func allowOneTx(ctx context.Context, rdb *redis.Client, key string, limit int64) (bool, error) {
	var incr *redis.IntCmd
	if _, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		incr = p.Incr(ctx, key)
		p.ExpireNX(ctx, key, time.Minute)
		return nil
	}); err != nil {
		return false, err
	}
	return incr.Val() <= limit, nil
}

// TestRESPRateLimiterAcrossNodes runs the fixed-window limiter (10 per
// window) through go-redis clients on the three nodes of a cluster.
// Requests that follow each other once the cluster has converged pass
// exactly 10 times, in both forms of the limiter. Concurrent requests on
// different nodes can each pass before hearing of the others: at least
// 10 and at most 10 per node pass, and every node ends on the exact count.
func TestRESPRateLimiterAcrossNodes(t *testing.T) {
	nodes := startCluster(t, 3, withRESP)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	clients := make([]*redis.Client, len(nodes))
	for i, p := range nodes {
		clients[i] = p.redisClient(t, nil)
	}
	const limit, requests = 10, 20

	for _, form := range []struct {
		name  string
		allow func(context.Context, *redis.Client, string, int64) (bool, error)
	}{{"dc.incrby", allowOne}, {"multi", allowOneTx}} {
		allow := form.allow
		t.Run(form.name, func(t *testing.T) {
			key := "rl:seq:" + form.name
			passed := 0
			for i := range requests {
				ok, err := allow(ctx, clients[i%len(clients)], key, limit)
				if err != nil {
					t.Fatal(err)
				}
				if ok {
					passed++
				}
				converged(t, nodes, key, int64(i+1))
			}
			if passed != limit {
				t.Fatalf("%d of %d sequential requests passed, want exactly %d", passed, requests, limit)
			}
			for _, r := range clients {
				if ttl, err := r.TTL(ctx, key).Result(); err != nil || ttl <= 0 || ttl > time.Minute {
					t.Fatalf("window TTL = %v %v, want in (0, 60s]", ttl, err)
				}
			}
		})
	}

	// All at once: 10 requests per node, concurrently.
	key := "rl:concurrent"
	var passed [3]atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 3*limit)
	for i, r := range clients {
		for range limit {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, err := allowOne(ctx, r, key, limit)
				if err != nil {
					errs <- err
				} else if ok {
					passed[i].Add(1)
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := int64(0)
	for i := range passed {
		if n := passed[i].Load(); n > limit {
			t.Errorf("%s let %d requests pass, more than the limit %d", nodes[i].name, n, limit)
		}
		total += passed[i].Load()
	}
	t.Logf("concurrent: %d of %d requests passed (bounds: %d to %d)", total, 3*limit, limit, 3*limit)
	if total < limit || total > 3*limit {
		t.Errorf("%d concurrent requests passed, want between %d and %d", total, limit, 3*limit)
	}
	converged(t, nodes, key, 3*limit)
}
