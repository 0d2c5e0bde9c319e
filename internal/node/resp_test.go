package node

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestRESPListenerServesTheNode: a node with RESPAddr answers a stock
// Redis client, and what it writes there reads the same over the service
// the HTTP API uses, durably (the data dir survives a crash copy).
func TestRESPListenerServesTheNode(t *testing.T) {
	dir := t.TempDir()
	nd := startDiskNode(t, dir, func(c *Config) { c.RESPAddr = "127.0.0.1:0" })
	rdb := redis.NewClient(&redis.Options{Addr: nd.RESPAddr()})
	defer rdb.Close()
	ctx := context.Background()
	cmds, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for range 16 {
			p.Incr(ctx, "hits")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range cmds {
		if v := c.(*redis.IntCmd).Val(); v != int64(i+1) {
			t.Fatalf("INCR %d answered %d", i+1, v)
		}
	}
	if c, _ := nd.Get(ctx, "hits"); c.Value != 16 {
		t.Fatalf("hits over the service = %d, want 16", c.Value)
	}
	again := startDiskNode(t, crashCopy(t, dir), nil)
	if c, _ := again.Get(ctx, "hits"); c.Value != 16 {
		t.Fatalf("after a crash hits = %d, want 16", c.Value)
	}
}
