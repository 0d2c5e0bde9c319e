package respserver

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestGoRedis drives the server with go-redis's default options: HELLO 3,
// CLIENT SETINFO, then the commands an application uses.
func TestGoRedis(t *testing.T) {
	f := newFake()
	_, addr := startServer(t, Config{Service: f})
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	ctx := context.Background()

	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	n, err := rdb.Incr(ctx, "hits").Result()
	must("INCR", err)
	if n != 1 {
		t.Fatalf("INCR = %d", n)
	}
	n, err = rdb.IncrBy(ctx, "hits", 41).Result()
	must("INCRBY", err)
	if n != 42 {
		t.Fatalf("INCRBY = %d", n)
	}
	v, err := rdb.Get(ctx, "hits").Int64()
	must("GET", err)
	if v != 42 {
		t.Fatalf("GET = %d", v)
	}
	if _, err := rdb.Get(ctx, "nope").Result(); err != redis.Nil {
		t.Fatalf("GET absent: %v", err)
	}
	vals, err := rdb.MGet(ctx, "hits", "nope").Result()
	must("MGET", err)
	if len(vals) != 2 || vals[0] != "42" || vals[1] != nil {
		t.Fatalf("MGET = %#v", vals)
	}
	ok, err := rdb.ExpireNX(ctx, "hits", time.Minute).Result()
	must("EXPIRE NX", err)
	if !ok {
		t.Fatal("EXPIRE NX not applied")
	}
	ok, err = rdb.ExpireNX(ctx, "hits", time.Hour).Result()
	must("EXPIRE NX again", err)
	if ok {
		t.Fatal("EXPIRE NX applied twice")
	}
	ttl, err := rdb.TTL(ctx, "hits").Result()
	must("TTL", err)
	if ttl != time.Minute {
		t.Fatalf("TTL = %v", ttl)
	}
	if d, err := rdb.Del(ctx, "hits", "nope").Result(); err != nil || d != 1 {
		t.Fatalf("DEL = %d, %v", d, err)
	}

	for i := range 35 {
		must("INCR", rdb.Incr(ctx, "k:"+strconv.Itoa(100+i)).Err())
	}
	var keys []string
	iter := rdb.Scan(ctx, 0, "k:*", 10).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	must("SCAN", iter.Err())
	if len(keys) != 35 || !slices.IsSorted(keys) {
		t.Fatalf("SCAN gave %d keys: %v", len(keys), keys)
	}

	f.callLog()
	cmds, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Incr(ctx, "p")
		p.IncrBy(ctx, "p", 9)
		p.Get(ctx, "p")
		p.Decr(ctx, "p")
		return nil
	})
	must("pipeline", err)
	if got := cmds[1].(*redis.IntCmd).Val(); got != 10 {
		t.Fatalf("pipelined INCRBY = %d", got)
	}
	if got := cmds[2].(*redis.StringCmd).Val(); got != "10" {
		t.Fatalf("pipelined GET = %q", got)
	}
	if got := cmds[3].(*redis.IntCmd).Val(); got != 9 {
		t.Fatalf("pipelined DECR = %d", got)
	}
	if got, want := f.callLog(), []string{"writes 2", "get p", "writes 1"}; !slices.Equal(got, want) {
		t.Fatalf("pipeline calls %q, want %q", got, want)
	}

	var incr *redis.IntCmd
	_, err = rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		incr = p.IncrBy(ctx, "tx", 5)
		p.Expire(ctx, "tx", time.Hour)
		return nil
	})
	must("MULTI/EXEC", err)
	if incr.Val() != 5 {
		t.Fatalf("tx INCRBY = %d", incr.Val())
	}
	if got, want := f.callLog(), []string{"writes 2"}; !slices.Equal(got, want) {
		t.Fatalf("transaction calls %q, want %q", got, want)
	}
	if ttl, err := rdb.TTL(ctx, "tx").Result(); err != nil || ttl != time.Hour {
		t.Fatalf("TTL tx = %v, %v", ttl, err)
	}
	if err := rdb.Set(ctx, "x", 1, 0).Err(); err == nil {
		t.Fatal("SET accepted")
	}
	n, err = rdb.Do(ctx, "DC.INCRBY", "w", 3, "IDEMPOTENCY", "req-1", "EX", 60).Int64()
	must("DC.INCRBY", err)
	n2, err := rdb.Do(ctx, "DC.INCRBY", "w", 3, "IDEMPOTENCY", "req-1", "EX", 60).Int64()
	must("DC.INCRBY retry", err)
	if n != 3 || n2 != 3 {
		t.Fatalf("DC.INCRBY = %d then %d", n, n2)
	}
	info, err := rdb.Info(ctx, "server").Result()
	must("INFO", err)
	if !containsLine(info, "redis_version:7.2.0") {
		t.Fatalf("INFO: %q", info)
	}
}

func containsLine(s, line string) bool {
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != '\n' {
			i++
		}
		l := s[:i]
		if len(l) > 0 && l[len(l)-1] == '\r' {
			l = l[:len(l)-1]
		}
		if l == line {
			return true
		}
		if i == len(s) {
			break
		}
		s = s[i+1:]
	}
	return false
}

// TestGoRedisAuth: go-redis authenticates through HELLO 3 AUTH; a wrong
// token or role is Redis's error.
func TestGoRedisAuth(t *testing.T) {
	_, addr := startServer(t, Config{Auth: testTokens})
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: addr, Password: "write-token-0123456789"})
	defer rdb.Close()
	if n, err := rdb.Incr(ctx, "a").Result(); err != nil || n != 1 {
		t.Fatalf("INCR = %d, %v", n, err)
	}
	reader := redis.NewClient(&redis.Options{Addr: addr, Username: "reader", Password: "read-token-0123456789"})
	defer reader.Close()
	if v, err := reader.Get(ctx, "a").Result(); err != nil || v != "1" {
		t.Fatalf("GET = %q, %v", v, err)
	}
	if err := reader.Incr(ctx, "a").Err(); err == nil || err.Error() != "NOPERM User reader has no permissions to run the 'incr' command" {
		t.Fatalf("INCR as reader: %v", err)
	}
	bad := redis.NewClient(&redis.Options{Addr: addr, Password: "wrong-token-0123456789", MaxRetries: -1})
	defer bad.Close()
	if err := bad.Ping(ctx).Err(); err == nil || err.Error() != "WRONGPASS invalid username-password pair or user is disabled." {
		t.Fatalf("PING with a wrong token: %v", err)
	}
}
