package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisClient is a go-redis client for p's Redis protocol listener, with
// go-redis's defaults (RESP3 through HELLO 3, CLIENT SETINFO, retries)
// unless opt changes them; opt may be nil.
func (p *proc) redisClient(t testing.TB, opt *redis.Options) *redis.Client {
	t.Helper()
	if opt == nil {
		opt = &redis.Options{}
	}
	opt.Addr = p.RESP
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

// converged polls until every node reports want for key over HTTP.
func converged(t testing.TB, nodes []*proc, key string, want int64) {
	t.Helper()
	waitFor(t, 10*time.Second, func() error {
		for _, p := range nodes {
			if err := expectValue(p, key, want); err != nil {
				return err
			}
		}
		return nil
	}, true)
}

// TestRESPGoRedisCluster drives a three-node cluster with go-redis v9 and
// its default options: a write through one node is read through HTTP and
// RESP on the others; pipelines, MULTI/EXEC, EXPIRE NX and SCAN work as
// go-redis expects them to.
func TestRESPGoRedisCluster(t *testing.T) {
	nodes := startCluster(t, 3, withRESP)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := make([]*redis.Client, len(nodes))
	for i, p := range nodes {
		r[i] = p.redisClient(t, nil)
	}

	if v, err := r[0].Incr(ctx, "gr:one").Result(); err != nil || v != 1 {
		t.Fatalf("INCR through n1 = %d %v", v, err)
	}
	if v, err := r[0].IncrBy(ctx, "gr:one", 41).Result(); err != nil || v != 42 {
		t.Fatalf("INCRBY through n1 = %d %v", v, err)
	}
	converged(t, nodes, "gr:one", 42)
	for i := 1; i < 3; i++ {
		waitFor(t, 10*time.Second, func() error {
			v, err := r[i].Get(ctx, "gr:one").Int64()
			if err == nil && v != 42 {
				err = fmt.Errorf("GET gr:one through %s = %d", nodes[i].name, v)
			}
			return err
		}, true)
	}
	// HELLO 3 went through: the connection speaks RESP3; CLIENT SETINFO
	// was taken.
	if info, err := r[1].Do(ctx, "CLIENT", "INFO").Text(); err != nil || !strings.Contains(info, "lib-name=go-redis") {
		t.Errorf("CLIENT INFO = %q %v, want the library name go-redis set", info, err)
	}
	if hello, err := r[1].Do(ctx, "HELLO", "3").Result(); err != nil || fmt.Sprint(hello) == "" || !strings.Contains(fmt.Sprint(hello), "proto:3") {
		t.Errorf("HELLO 3 = %v %v", hello, err)
	}

	// A pipeline answers in order, each INCRBY with the value after it.
	cmds, err := r[1].Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range 100 {
			p.IncrBy(ctx, fmt.Sprintf("gr:p:%d", i%10), int64(i%5+1))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	totals := map[string]int64{}
	for i, c := range cmds {
		key := fmt.Sprintf("gr:p:%d", i%10)
		totals[key] += int64(i%5 + 1)
		if v := c.(*redis.IntCmd).Val(); v != totals[key] {
			t.Fatalf("pipelined INCRBY %d answered %d, want %d", i, v, totals[key])
		}
	}
	for key, v := range totals {
		converged(t, nodes, key, v)
	}

	// MULTI/EXEC: the rate limiter's INCR + EXPIRE NX.
	var incr *redis.IntCmd
	var exp *redis.BoolCmd
	for round, want := range []struct {
		v   int64
		set bool
	}{{1, true}, {2, false}} {
		_, err := r[2].TxPipelined(ctx, func(p redis.Pipeliner) error {
			incr = p.Incr(ctx, "gr:tx")
			exp = p.ExpireNX(ctx, "gr:tx", time.Minute)
			return nil
		})
		if err != nil || incr.Val() != want.v || exp.Val() != want.set {
			t.Fatalf("transaction %d: INCR %d, EXPIRE NX %v, %v; want %d, %v", round, incr.Val(), exp.Val(), err, want.v, want.set)
		}
	}
	if ttl, err := r[2].TTL(ctx, "gr:tx").Result(); err != nil || ttl <= 0 || ttl > time.Minute {
		t.Fatalf("TTL gr:tx = %v %v", ttl, err)
	}

	// EXPIRE's conditions.
	for _, c := range []struct {
		name string
		cmd  *redis.BoolCmd
		want bool
	}{
		{"NX on a key without expiry", r[0].ExpireNX(ctx, "gr:one", time.Minute), true},
		{"NX again", r[0].ExpireNX(ctx, "gr:one", 2*time.Minute), false},
		{"GT later", r[0].ExpireGT(ctx, "gr:one", 2*time.Minute), true},
		{"LT later", r[0].ExpireLT(ctx, "gr:one", 3*time.Minute), false},
		{"XX", r[0].ExpireXX(ctx, "gr:one", 90*time.Second), true},
		{"NX on a missing key", r[0].ExpireNX(ctx, "gr:missing", time.Minute), false},
		{"PERSIST", r[0].Persist(ctx, "gr:one"), true},
	} {
		if v, err := c.cmd.Result(); err != nil || v != c.want {
			t.Errorf("EXPIRE %s = %v %v, want %v", c.name, v, err, c.want)
		}
	}

	// SCAN over 250 keys written through n1, iterated on n2 once it has
	// them all: each key once.
	_, err = r[0].Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range 250 {
			p.Incr(ctx, fmt.Sprintf("gr:scan:%03d", i))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	converged(t, nodes[1:2], "gr:scan:249", 1)
	waitFor(t, 10*time.Second, func() error {
		if n, _, err := nodes[1].listAll("gr:scan:", 1000); err != nil || len(n) != 250 {
			return fmt.Errorf("n2 lists %d of 250 scan keys: %v", len(n), err)
		}
		return nil
	}, true)
	for _, count := range []int64{0, 7, 100} {
		seen := map[string]int{}
		it := r[1].Scan(ctx, 0, "gr:scan:*", count).Iterator()
		for it.Next(ctx) {
			seen[it.Val()]++
		}
		if err := it.Err(); err != nil {
			t.Fatalf("SCAN COUNT %d: %v", count, err)
		}
		if len(seen) != 250 {
			t.Errorf("SCAN COUNT %d found %d keys, want 250", count, len(seen))
		}
		for k, n := range seen {
			if n != 1 || !strings.HasPrefix(k, "gr:scan:") {
				t.Errorf("SCAN COUNT %d returned %q %d times", count, k, n)
			}
		}
	}
}

// TestRESPIdempotentIncrAcrossRestart: DC.INCRBY with an IDEMPOTENCY token
// counts once however often it is retried, also after the node was killed
// with SIGKILL and restarted on its data dir; a retry answers the first
// answer.
func TestRESPIdempotentIncrAcrossRestart(t *testing.T) {
	node := startNode(t, "idem", "", withRESP)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := node.redisClient(t, nil)
	dc := func(r *redis.Client, args ...any) int64 {
		t.Helper()
		v, err := r.Do(ctx, append([]any{"DC.INCRBY"}, args...)...).Int64()
		if err != nil {
			t.Fatalf("DC.INCRBY %v: %v", args, err)
		}
		return v
	}
	get := func(r *redis.Client, key string) int64 {
		t.Helper()
		v, err := r.Get(ctx, key).Int64()
		if err != nil {
			t.Fatalf("GET %s: %v", key, err)
		}
		return v
	}
	if v := dc(r, "idem", 5, "IDEMPOTENCY", "req-1"); v != 5 {
		t.Fatalf("first DC.INCRBY = %d, want 5", v)
	}
	if v := dc(r, "idem", 5, "IDEMPOTENCY", "req-1"); v != 5 {
		t.Fatalf("retried DC.INCRBY = %d, want the first answer 5", v)
	}
	if v := dc(r, "idem", 3, "IDEMPOTENCY", "req-2"); v != 8 {
		t.Fatalf("DC.INCRBY with another token = %d, want 8", v)
	}
	if v := get(r, "idem"); v != 8 {
		t.Fatalf("GET idem = %d, want 8", v)
	}
	// Expiry with the write: EX sets it only where there is none, unless
	// ALWAYS.
	if v := dc(r, "win", 1, "EX", 60); v != 1 {
		t.Fatalf("DC.INCRBY win 1 EX 60 = %d", v)
	}
	if v := dc(r, "win", 1, "EX", 10); v != 2 {
		t.Fatalf("DC.INCRBY win 1 EX 10 = %d", v)
	}
	if ttl := r.TTL(ctx, "win").Val(); ttl <= 10*time.Second || ttl > time.Minute {
		t.Fatalf("TTL after EX 60 then EX 10 = %v, want the first expiry kept", ttl)
	}
	if v := dc(r, "win", 1, "PX", 5000, "ALWAYS"); v != 3 {
		t.Fatalf("DC.INCRBY win 1 PX 5000 ALWAYS = %d", v)
	}
	if ttl := r.PTTL(ctx, "win").Val(); ttl <= 0 || ttl > 5*time.Second {
		t.Fatalf("PTTL after PX 5000 ALWAYS = %v", ttl)
	}

	node.kill()
	node.start()
	r2 := node.redisClient(t, nil)
	if v := dc(r2, "idem", 5, "IDEMPOTENCY", "req-1"); v != 5 {
		t.Fatalf("DC.INCRBY retried after a restart = %d, want the first answer 5", v)
	}
	if v := dc(r2, "idem", 3, "IDEMPOTENCY", "req-2"); v != 8 {
		t.Fatalf("second token retried after a restart = %d, want 8", v)
	}
	if v := get(r2, "idem"); v != 8 {
		t.Fatalf("GET idem after retries across a restart = %d, want 8", v)
	}
	if v := dc(r2, "idem", 1, "IDEMPOTENCY", "req-3"); v != 9 {
		t.Fatalf("a new token after the restart = %d, want 9", v)
	}
	if v, err := node.value("idem"); err != nil || v != 9 {
		t.Fatalf("HTTP idem = %d %v, want 9", v, err)
	}
}

// TestRESPAuthRolesAndTLS checks AUTH against a real --auth-file with
// tokens made by dcounter keygen, through redis-cli and go-redis, then the
// same over TLS (redis-cli --tls --cacert, go-redis with a tls.Config).
func TestRESPAuthRolesAndTLS(t *testing.T) {
	redisTool(t, "redis-cli")
	token := func() string {
		out, errOut, code := runCLI(t, nil, "keygen")
		if code != 0 {
			t.Fatalf("dcounter keygen: %d %s", code, errOut)
		}
		return strings.TrimSpace(out)
	}
	read, write := token(), token()
	authFile := filepath.Join(t.TempDir(), "tokens")
	writeAuthFile(t, authFile, read+" read dash", write+" write app")
	node := startNode(t, "auth", "", "--auth-file", authFile, withRESP)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// redis-cli, one session: refused before AUTH, a wrong token, a read
	// token that cannot write, a write token that can.
	out := redisCLI(t, node.RESP, "GET k\nINCR k\nAUTH not-a-token-0123456789\nAUTH "+read+"\nGET k\nINCR k\nAUTH default "+write+"\nINCR k\nGET k\n")
	lines := strings.Split(out, "\n")
	want := []string{
		"NOAUTH Authentication required.", "",
		"NOAUTH Authentication required.", "",
		"WRONGPASS invalid username-password pair or user is disabled.", "",
		"OK", "",
		"NOPERM", "",
		"OK", "1", "1", "",
	}
	if len(lines) != len(want) {
		t.Fatalf("auth session printed %q", out)
	}
	for i, w := range want {
		if lines[i] != w && !(w == "NOPERM" && strings.HasPrefix(lines[i], "NOPERM ") && strings.Contains(lines[i], "'incr'")) {
			t.Errorf("auth session line %d = %q, want %q\n%s", i+1, lines[i], w, out)
		}
	}
	if got := redisCLI(t, node.RESP, "", "-a", write, "--no-auth-warning", "INCRBY", "k", "4"); got != "5\n" {
		t.Errorf("redis-cli -a WRITE INCRBY k 4 = %q, want 5", got)
	}

	// go-redis: Password is sent with HELLO 3 (user "default").
	noAuth := node.redisClient(t, nil)
	if err := noAuth.Get(ctx, "k").Err(); err == nil || !strings.HasPrefix(err.Error(), "NOAUTH") {
		t.Errorf("go-redis without a password: %v, want NOAUTH", err)
	}
	wrong := node.redisClient(t, &redis.Options{Password: "not-a-token-0123456789", MaxRetries: -1})
	if err := wrong.Get(ctx, "k").Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Errorf("go-redis with a wrong password: %v, want WRONGPASS", err)
	}
	reader := node.redisClient(t, &redis.Options{Password: read})
	if v, err := reader.Get(ctx, "k").Int64(); err != nil || v != 5 {
		t.Errorf("go-redis read token GET k = %d %v, want 5", v, err)
	}
	if err := reader.Incr(ctx, "k").Err(); err == nil || !strings.HasPrefix(err.Error(), "NOPERM") {
		t.Errorf("go-redis read token INCR: %v, want NOPERM", err)
	}
	writer := node.redisClient(t, &redis.Options{Password: write})
	if v, err := writer.Incr(ctx, "k").Result(); err != nil || v != 6 {
		t.Errorf("go-redis write token INCR k = %d %v, want 6", v, err)
	}
	if strings.Contains(node.log.String(), write) || strings.Contains(node.log.String(), read) {
		t.Error("a token appears in the node's log")
	}

	// TLS: the node serves RESP with its client-API certificate.
	pki := newPKI(t)
	tnode := startSecureNode(t, pki, authFile, withRESP)
	tlsCLI := func(args ...string) (string, error) {
		return runRedisCLI(tnode.RESP, "", append([]string{"--tls", "--cacert", pki.CA, "-a", write, "--no-auth-warning"}, args...)...)
	}
	if got, err := tlsCLI("INCRBY", "tls", "2"); err != nil || got != "2\n" {
		t.Errorf("redis-cli --tls --cacert INCRBY tls 2 = %q %v", got, err)
	}
	// Plain text to the TLS port gets nothing done.
	runRedisCLI(tnode.RESP, "", "-a", write, "--no-auth-warning", "INCRBY", "tls", "100")
	b, _ := os.ReadFile(pki.CA)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	tr := tnode.redisClient(t, &redis.Options{Password: write, TLSConfig: &tls.Config{RootCAs: pool}})
	if v, err := tr.IncrBy(ctx, "tls", 3).Result(); err != nil || v != 5 {
		t.Errorf("go-redis over TLS INCRBY tls 3 = %d %v, want 5", v, err)
	}
	untrusting := tnode.redisClient(t, &redis.Options{Password: write, TLSConfig: &tls.Config{}, MaxRetries: -1})
	if err := untrusting.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("go-redis without the CA: %v, want a certificate verification error", err)
	}
	if got, err := tlsCLI("GET", "tls"); err != nil || got != "5\n" {
		t.Errorf("redis-cli --tls GET tls = %q %v, want 5", got, err)
	}
}

// TestRESPKill9KeepsAcknowledgedPipelinedINCRs: three go-redis clients
// pipeline INCRs, 16 per pipeline, into a node with --fsync always until it
// is killed with SIGKILL; restarted on its data dir, the node holds at
// least every acknowledged INCR and at most every INCR sent.
func TestRESPKill9KeepsAcknowledgedPipelinedINCRs(t *testing.T) {
	node := startNode(t, "dur", "", "--fsync", "always", withRESP)
	var acked, sent atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		// No retries: a retried pipeline would send its INCRs twice, and
		// sent would no longer bound the count.
		r := node.redisClient(t, &redis.Options{MaxRetries: -1})
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for {
				select {
				case <-stop:
					return
				default:
				}
				sent.Add(16)
				cmds, _ := r.Pipelined(ctx, func(p redis.Pipeliner) error {
					for range 16 {
						p.Incr(ctx, "dur")
					}
					return nil
				})
				for _, c := range cmds {
					if c.Err() == nil {
						acked.Add(1)
					}
				}
				if len(cmds) > 0 && cmds[len(cmds)-1].Err() != nil {
					return // the node is gone
				}
			}
		}()
	}
	// The load runs for two seconds (a duration, not a condition waited
	// for), then the node dies mid-stream.
	time.Sleep(2 * time.Second)
	node.kill()
	close(stop)
	wg.Wait()
	if acked.Load() == 0 {
		t.Fatal("no INCR was acknowledged before the kill")
	}
	node.start()
	v, err := node.value("dur")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("acknowledged %d, sent %d, held after restart %d", acked.Load(), sent.Load(), v)
	if v < acked.Load() || v > sent.Load() {
		t.Fatalf("after kill -9 and restart dur = %d, want between %d acknowledged and %d sent", v, acked.Load(), sent.Load())
	}
}
