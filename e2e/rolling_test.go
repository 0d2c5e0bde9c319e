package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// rollingLoad writes to random nodes over HTTP (half of the HTTP writers
// with an Idempotency-Key) and RESP the way a client behind a Kubernetes
// Service would: a write refused with an answer that says nothing was
// applied (HTTP 503, RESP TRYAGAIN, or a refused connection: the process
// is down) is sent again to another node; any other failure is in doubt
// and counts as failed, as does a write still refused after every node
// was tried.
type rollingLoad struct {
	nodes []*proc
	keys  []string
	l     *ledger

	mu      sync.Mutex
	acked   int
	failed  map[string]int // by kind
	retried int            // refusals followed by a retry elsewhere
	// avoid holds, per node that refused a write, until when writers
	// leave it alone, as a Service drops a terminating pod's endpoint
	// and a gateway a node that answered 503.
	avoid     map[*proc]time.Time
	latencies []time.Duration
	measure   bool // record latencies (during the rollout)
}

func (r *rollingLoad) fail(kind string) {
	r.mu.Lock()
	r.failed[kind]++
	r.mu.Unlock()
}

// refused reports whether err certainly means "not applied": the node
// said so, or no connection could be made to send it on.
func refused(status int, err error) bool {
	if err != nil {
		var oe *net.OpError
		return errors.Is(err, syscall.ECONNREFUSED) || strings.HasPrefix(err.Error(), "TRYAGAIN ") ||
			(errors.As(err, &oe) && oe.Op == "dial")
	}
	return status == http.StatusServiceUnavailable
}

// order returns the nodes to try, in random order, those recently refusing
// last.
func (r *rollingLoad) order(rng *rand.Rand) []*proc {
	now := time.Now()
	var fresh, avoided []*proc
	r.mu.Lock()
	for _, i := range rng.Perm(len(r.nodes)) {
		if p := r.nodes[i]; now.Before(r.avoid[p]) {
			avoided = append(avoided, p)
		} else {
			fresh = append(fresh, p)
		}
	}
	r.mu.Unlock()
	return append(fresh, avoided...)
}

// write sends one write, retrying on other nodes while it is refused, and
// records the outcome.
func (r *rollingLoad) write(rng *rand.Rand, kind string, via func(p *proc, key string, amount int64, id string) (int, error)) {
	id := fmt.Sprintf("w%016x", rng.Uint64()) // the same on every attempt
	key := r.keys[rng.IntN(len(r.keys))]
	amount := int64(rng.IntN(9) + 1)
	order := r.order(rng)
	start := time.Now()
	for i, p := range order {
		status, err := via(p, key, amount, id)
		switch {
		case err == nil && status == http.StatusOK:
			took := time.Since(start)
			r.l.record(key, amount, nil)
			r.mu.Lock()
			r.acked++
			if r.measure {
				r.latencies = append(r.latencies, took)
			}
			r.mu.Unlock()
			return
		case refused(status, err):
			r.mu.Lock()
			r.avoid[p] = time.Now().Add(2 * time.Second)
			if i < len(order)-1 {
				r.retried++
				r.mu.Unlock()
				continue
			}
			r.mu.Unlock()
			r.fail(kind + ": refused by every node")
			return
		case err != nil:
			r.l.record(key, amount, err) // in doubt
			r.fail(kind + ": in doubt: " + err.Error())
			return
		default:
			r.l.record(key, amount, fmt.Errorf("HTTP %d", status))
			r.fail(fmt.Sprintf("%s: HTTP %d", kind, status))
			return
		}
	}
}

func (r *rollingLoad) run(ctx context.Context, t *testing.T, httpWorkers, respWorkers int) *sync.WaitGroup {
	r.failed, r.avoid = map[string]int{}, map[*proc]time.Time{}
	var wg sync.WaitGroup
	httpWrite := func(withKey bool) func(p *proc, key string, amount int64, id string) (int, error) {
		return func(p *proc, key string, amount int64, id string) (int, error) {
			wctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var hdr http.Header
			if withKey {
				// With an Idempotency-Key, Go's transport resends a
				// request whose kept-alive connection the server closed
				// before reading it, instead of failing with EOF.
				hdr = http.Header{"Idempotency-Key": {id}}
			}
			st, _, _, err := p.call(wctx, http.MethodPost, "/counters/"+key+"/increment", fmt.Sprintf(`{"amount":%d}`, amount), hdr)
			return st, err
		}
	}
	for w := range httpWorkers {
		kind, via := "http", httpWrite(false)
		if w%2 == 1 {
			kind, via = "http with Idempotency-Key", httpWrite(true)
		}
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(time.Now().UnixNano())))
			for ctx.Err() == nil {
				r.write(rng, kind, via)
			}
		}(uint64(w))
	}
	for w := range respWorkers {
		// One go-redis client per node, without go-redis's own retries
		// (it would resend an INCRBY whose connection broke: in doubt).
		clients := map[*proc]*redis.Client{}
		for _, p := range r.nodes {
			clients[p] = p.redisClient(t, &redis.Options{MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: 5 * time.Second, PoolSize: 2})
		}
		respWrite := func(p *proc, key string, amount int64, _ string) (int, error) {
			wctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := clients[p].IncrBy(wctx, key, amount).Err(); err != nil {
				return 0, err
			}
			return http.StatusOK, nil
		}
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(time.Now().UnixNano())))
			for ctx.Err() == nil {
				r.write(rng, "resp", respWrite)
			}
		}(uint64(100 + w))
	}
	return &wg
}

// TestRollingRestartLosesNothing restarts each of five nodes in turn with
// SIGTERM, as a StatefulSet rollout does, under continuous HTTP and RESP
// writes, waiting for each to answer /health (and RESP) before stopping
// the next. Nothing acknowledged is lost, at most 0.1% of writes fail, and
// no node ever reports a member dead. Then one node comes back with an
// empty data dir, as a pod whose volume was lost: a new replica, and the
// totals stay.
func TestRollingRestartLosesNothing(t *testing.T) {
	begin := time.Now()
	nodes := startCluster(t, 5, withRESP)
	keys := []string{"a", "b", "c", "default"}
	load := &rollingLoad{nodes: nodes, keys: keys, l: newLedger()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	writers := load.run(ctx, t, 4, 2)
	var watch deadWatch
	watching := watch.run(ctx, nodes)
	waitFor(t, 10*time.Second, func() error {
		load.mu.Lock()
		defer load.mu.Unlock()
		if load.acked < 200 {
			return fmt.Errorf("%d writes acknowledged", load.acked)
		}
		load.measure = true
		return nil
	}, true)

	type timing struct{ stop, ready, alive time.Duration }
	var times []timing
	// In a StatefulSet every pod joins through the headless Service,
	// including the first; here the first, started alone, rejoins through
	// the second (a node with no --join starts a cluster of its own).
	nodes[0].args = append(nodes[0].args, "--join", nodes[1].Gossip)
	for i, p := range nodes {
		observer := nodes[(i+1)%len(nodes)]
		id := nodeID(t, p)
		inc := incarnationOf(t, observer, id)
		t0 := time.Now()
		p.stop(t) // SIGTERM; exits 0
		t1 := time.Now()
		p.start() // until /health answers and RESP accepts
		t2 := time.Now()
		others := slices.DeleteFunc(slices.Clone(nodes), func(o *proc) bool { return o == p })
		waitFor(t, 10*time.Second, func() error { return everyoneSees(others, p.name, "alive") }, true)
		times = append(times, timing{t1.Sub(t0), t2.Sub(t0), time.Since(t0)})
		// The same replica, at a higher incarnation.
		if got := nodeID(t, p); got != id {
			t.Fatalf("%s restarted on its data dir as replica %s, was %s", p.name, got, id)
		}
		if got := incarnationOf(t, observer, id); got <= inc {
			t.Fatalf("%s restarted at incarnation %d, was %d", p.name, got, inc)
		}
	}
	load.mu.Lock()
	load.measure = false
	load.mu.Unlock()

	// A pod rescheduled without its volume: the same name and addresses,
	// an empty data dir, so a new replica. The old one's counts stay.
	last := nodes[len(nodes)-1]
	oldID := nodeID(t, last)
	last.stop(t)
	if err := os.RemoveAll(last.DataDir); err != nil {
		t.Fatal(err)
	}
	last.start()
	newID := nodeID(t, last)
	if newID == oldID {
		t.Fatalf("an empty data dir kept replica ID %s", oldID)
	}
	waitFor(t, 10*time.Second, func() error {
		if err := everyoneSeesID(nodes, newID, "alive"); err != nil {
			return err
		}
		return everyoneSeesID(nodes, oldID, "left")
	}, true)

	time.Sleep(500 * time.Millisecond) // a little more load on the new replica; not a condition
	cancel()
	writers.Wait()
	watching.Wait()
	final := agreedValues(t, nodes, keys, 10*time.Second)
	load.l.mu.Lock()
	var acked, doubt int64
	for _, v := range load.l.acked {
		acked += v
	}
	for _, v := range load.l.inDoubt {
		doubt += v
	}
	load.l.mu.Unlock()
	load.l.check(t, final) // acknowledged ≤ total ≤ acknowledged + in doubt, on every node

	if len(watch.seen) != 0 {
		t.Errorf("members reported dead during the rollout:\n%s", strings.Join(watch.seen, "\n"))
	}
	load.mu.Lock()
	failed, failedBy := summarize(load.failed)
	total := load.acked + failed
	lat := slices.Clone(load.latencies)
	retried := load.retried
	load.mu.Unlock()
	if float64(failed) > 0.001*float64(total) {
		t.Errorf("%d of %d writes failed (%s): more than 0.1%%", failed, total, failedBy)
	}
	slices.Sort(lat)
	p := func(q float64) time.Duration { return lat[int(q*float64(len(lat)-1))].Round(100 * time.Microsecond) }
	var per []string
	for i, tm := range times {
		per = append(per, fmt.Sprintf("%s: exited %v, ready %v, alive everywhere %v", nodes[i].name,
			tm.stop.Round(time.Millisecond), tm.ready.Round(time.Millisecond), tm.alive.Round(time.Millisecond)))
	}
	t.Logf("rolling restart of 5 nodes: %d writes, %d failed (%s), %d refusals retried elsewhere; "+
		"during the rollout p50 %v p99 %v max %v over %d writes; acknowledged sum %d, in doubt %d, none lost; "+
		"%d /nodes polls, no member dead; test took %v\n%s",
		total, failed, failedBy, retried, p(0.5), p(0.99), lat[len(lat)-1].Round(100*time.Microsecond), len(lat),
		acked, doubt, watch.polls, time.Since(begin).Round(time.Millisecond), strings.Join(per, "\n"))
}

// everyoneSeesID checks that every observer lists the member with replica
// ID id in status.
func everyoneSeesID(observers []*proc, id, status string) error {
	for _, o := range observers {
		b, err := o.get("/nodes")
		if err != nil {
			return err
		}
		var ms []struct{ ID, Status string }
		if err := json.Unmarshal(b, &ms); err != nil {
			return err
		}
		got := ""
		for _, m := range ms {
			if m.ID == id {
				got = m.Status
			}
		}
		if got != status {
			return fmt.Errorf("%s sees replica %s as %q, want %q", o.name, id, got, status)
		}
	}
	return nil
}

// incarnationOf is the incarnation observer lists for replica id.
func incarnationOf(t *testing.T, observer *proc, id string) uint64 {
	t.Helper()
	b, err := observer.get("/nodes")
	if err != nil {
		t.Fatal(err)
	}
	var ms []struct {
		ID          string
		Incarnation uint64
	}
	if err := json.Unmarshal(b, &ms); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.ID == id {
			return m.Incarnation
		}
	}
	t.Fatalf("%s does not list replica %s", observer.name, id)
	return 0
}

// nodeID is p's replica ID, from its /health.
func nodeID(t *testing.T, p *proc) string {
	t.Helper()
	b, err := p.get("/health")
	if err != nil {
		t.Fatal(err)
	}
	var h struct{ ID string }
	if err := json.Unmarshal(b, &h); err != nil || h.ID == "" {
		t.Fatalf("health %s: %v", b, err)
	}
	return h.ID
}
