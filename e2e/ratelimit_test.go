package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// windowStats is what the clients saw of one rate-limit window.
type windowStats struct {
	acked, inDoubt, refused int64 // increments acknowledged, without an answer, certainly not applied
	allowed, denied         int64 // acknowledged increments answered ≤ limit, > limit
}

// rateLedger records, per window key, every increment's outcome.
type rateLedger struct {
	mu      sync.Mutex
	windows map[string]*windowStats
}

func (l *rateLedger) record(key string, f func(*windowStats)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.windows == nil {
		l.windows = map[string]*windowStats{}
	}
	w := l.windows[key]
	if w == nil {
		w = &windowStats{}
		l.windows[key] = w
	}
	f(w)
}

func (l *rateLedger) keys() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ks []string
	for k := range l.windows {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool { return len(ks[i]) < len(ks[j]) || len(ks[i]) == len(ks[j]) && ks[i] < ks[j] })
	return ks
}

// incrementOutcome sends one write and classifies it: acknowledged (with
// the value answered), certainly not applied (refused: an error status
// other than 500, or no connection), or in doubt (no answer, or 500).
func incrementOutcome(ctx context.Context, p *proc, key, body string) (value int64, outcome string) {
	status, b, _, err := p.call(ctx, http.MethodPost, "/counters/"+key+"/increment", body, nil)
	switch {
	case err != nil && (errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH)):
		return 0, "refused"
	case err != nil || status == http.StatusInternalServerError:
		return 0, "in doubt"
	case status != http.StatusOK:
		return 0, "refused"
	}
	var r counterAnswer
	if err := json.Unmarshal(b, &r); err != nil {
		return 0, "in doubt"
	}
	return r.Value, "acked"
}

// TestRateLimiterFiveNodes drives a fixed-window rate limiter (100 hits per
// 2 s window, one key per window, INCR + EXPIRE NX as one write with
// ttl_seconds) through the HTTP API of five nodes, each in its own network
// namespace, for 20 s, while one node is killed with SIGKILL and restarted
// on its data dir and another is cut off from the rest for 5 s (its clients
// keep writing to it). One node's clock runs 200 ms ahead. After healing,
// every node must report for every window exactly the acknowledged
// increments (plus at most those whose answer never arrived) and the same
// expiry; once the windows' TTL has passed, no node lists or counts any.
func TestRateLimiterFiveNodes(t *testing.T) {
	const (
		limit   = 100
		window  = 2 * time.Second
		runFor  = 20 * time.Second
		clients = 10 // two per node
		pace    = 10 * time.Millisecond
		// ttl must outlast the run (20 s) plus the convergence and expiry
		// checks after it (bounded below at 5 s) with margin, so that the
		// first window is still live when they read it; and it should be
		// short, for the test waits for the last window to expire.
		ttl = 30 * time.Second
	)
	lab := newNetlab(t, 5)
	var nodes []*proc
	for i := 0; i < 5; i++ {
		join := ""
		if i > 0 {
			join = nodes[0].Gossip
		}
		// --max-clock-skew 500ms: expiry grace 1 s. n3's clock is 200 ms ahead.
		extra := []string{"--max-clock-skew", "500ms"}
		if i == 2 {
			extra = append(extra, "--clock-offset", "200ms")
		}
		nodes = append(nodes, lab.node(i, join, extra...))
	}
	for _, p := range nodes {
		waitFor(t, 10*time.Second, func() error { return memberCount(p, 5) }, true)
	}
	killed, cut := nodes[1], 4

	var l rateLedger
	body := fmt.Sprintf(`{"amount":1,"ttl_seconds":%d}`, int(ttl/time.Second))
	start := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(p *proc) {
			defer wg.Done()
			for ctx.Err() == nil {
				elapsed := time.Since(start)
				if elapsed >= runFor {
					return
				}
				key := fmt.Sprintf("rl:w%d", int(elapsed/window))
				wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
				v, outcome := incrementOutcome(wctx, p, key, body)
				wcancel()
				l.record(key, func(w *windowStats) {
					switch outcome {
					case "acked":
						w.acked++
						if v <= limit {
							w.allowed++
						} else {
							w.denied++
						}
					case "in doubt":
						w.inDoubt++
					default:
						w.refused++
					}
				})
				time.Sleep(pace) // load shaping: ~100 requests per second per client
			}
		}(nodes[c%len(nodes)])
	}
	at := func(d time.Duration) { time.Sleep(time.Until(start.Add(d))) } // a schedule, not a condition

	at(3 * time.Second)
	killed.kill()
	t.Logf("%v: %s killed with SIGKILL", time.Since(start).Round(time.Millisecond), killed.name)
	at(6 * time.Second)
	killed.start()
	t.Logf("%v: %s restarted on its data dir and serving", time.Since(start).Round(time.Millisecond), killed.name)
	at(9 * time.Second)
	others := []int{0, 1, 2, 3}
	lab.partition([]int{cut}, others)
	cutAt := time.Now()
	t.Logf("%v: %s cut off from the others", cutAt.Sub(start).Round(time.Millisecond), nodes[cut].name)
	at(9*time.Second + 5*time.Second)
	// Evidence that the cut cut: the isolated node counts only its own
	// clients' hits of the window that lay wholly inside the cut.
	inside := fmt.Sprintf("rl:w%d", int((time.Since(start)-window)/window))
	vCut, err1 := nodes[cut].value(inside)
	v0, err0 := nodes[0].value(inside)
	lab.heal()
	t.Logf("%v: healed after %v; just before, %s = %d on %s, %d on %s", time.Since(start).Round(time.Millisecond),
		time.Since(cutAt).Round(time.Millisecond), inside, vCut, nodes[cut].name, v0, nodes[0].name)
	if err1 != nil || err0 != nil || vCut >= v0 {
		t.Fatalf("the isolated node counted %d (%v) of %s, the others %d (%v): the cut cut nothing", vCut, err1, inside, v0, err0)
	}
	wg.Wait()
	done := time.Now()
	t.Logf("%v: clients stopped", done.Sub(start).Round(time.Millisecond))

	keys := l.keys()
	if len(keys) != int(runFor/window) {
		t.Fatalf("windows written: %v, want %d", keys, runFor/window)
	}
	// Exact convergence: every node, every window.
	final := map[string]int64{}
	waitFor(t, 5*time.Second, func() error {
		for _, k := range keys {
			var first int64
			for i, p := range nodes {
				v, err := p.value(k)
				if err != nil {
					return err
				}
				if i == 0 {
					first = v
				} else if v != first {
					return fmt.Errorf("%s: %s = %d, %s has %d", p.name, k, v, nodes[0].name, first)
				}
			}
			l.mu.Lock()
			w := *l.windows[k]
			l.mu.Unlock()
			if first < w.acked || first > w.acked+w.inDoubt {
				return fmt.Errorf("%s = %d on every node: %d acknowledged, %d in doubt", k, first, w.acked, w.inDoubt)
			}
			final[k] = first
		}
		return nil
	}, true)
	t.Logf("every node reports every window exactly %v after the clients stopped", time.Since(done).Round(time.Millisecond))

	// The same expiry everywhere: each node's time left, read back to
	// back, puts the deadline at the same instant (n3 reads 200 ms less:
	// its clock is ahead), about ttl after the window's first write.
	var lastDeadline time.Time
	var totAllowed, totDenied, totAcked, totDoubt, totRefused int64
	for i, k := range keys {
		var lo, hi time.Time
		for _, p := range nodes {
			c, err := p.counter(k)
			if err != nil {
				t.Fatal(err)
			}
			if c.TTLMs <= 0 {
				t.Fatalf("%s: %s has no expiry: %+v", p.name, k, c)
			}
			d := time.Now().Add(time.Duration(c.TTLMs) * time.Millisecond)
			if lo.IsZero() || d.Before(lo) {
				lo = d
			}
			if d.After(hi) {
				hi = d
			}
		}
		if spread := hi.Sub(lo); spread > 500*time.Millisecond {
			t.Errorf("%s: the nodes' deadlines are %v apart", k, spread)
		}
		want := start.Add(time.Duration(i)*window + ttl)
		if off := lo.Sub(want); off < -time.Second || off > time.Second {
			t.Errorf("%s expires %v from its window's start, want about %v", k, lo.Sub(start.Add(time.Duration(i)*window)), ttl)
		}
		if hi.After(lastDeadline) {
			lastDeadline = hi
		}
		l.mu.Lock()
		w := *l.windows[k]
		l.mu.Unlock()
		t.Logf("%-7s value %5d on all 5 nodes: acknowledged %5d, in doubt %d, refused %4d; allowed %3d, denied %5d; expires %.1fs after the start",
			k, final[k], w.acked, w.inDoubt, w.refused, w.allowed, w.denied, lo.Sub(start).Seconds())
		totAllowed += w.allowed
		totDenied += w.denied
		totAcked += w.acked
		totDoubt += w.inDoubt
		totRefused += w.refused
	}
	t.Logf("total: %d acknowledged (%d allowed, %d denied), %d in doubt, %d refused", totAcked, totAllowed, totDenied, totDoubt, totRefused)
	if totAllowed == 0 || totDenied == 0 {
		t.Fatalf("the limiter never allowed or never denied (%d, %d): the load does not exercise it", totAllowed, totDenied)
	}

	// After the TTL: no node lists or counts any window.
	waitFor(t, time.Until(lastDeadline)+5*time.Second, func() error {
		for _, p := range nodes {
			items, _, err := p.listAll("rl:", 100)
			if err != nil {
				return err
			}
			if len(items) > 0 {
				return fmt.Errorf("%s still lists %d windows, first %+v", p.name, len(items), items[0])
			}
			for _, k := range keys {
				if err := expectValue(p, k, 0); err != nil {
					return err
				}
			}
		}
		return nil
	}, true)
	t.Logf("no window listed or counted on any node %v after the last deadline", time.Since(lastDeadline).Round(time.Millisecond))
	for _, p := range nodes {
		if strings.Contains(p.log.String(), "panic") {
			t.Errorf("%s logged a panic", p.name)
		}
	}
}
