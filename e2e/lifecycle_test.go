package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// del deletes key on p and returns the answer's "deleted".
func (p *proc) del(t *testing.T, key string, hdr http.Header) (deleted, replayed bool) {
	t.Helper()
	status, b, h, err := p.call(context.Background(), http.MethodDelete, "/counters/"+key, "", hdr)
	if err != nil || status != http.StatusOK {
		t.Fatalf("DELETE /counters/%s on %s: %d %s %v", key, p.name, status, b, err)
	}
	var r struct{ Deleted bool }
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r.Deleted, h.Get("Idempotent-Replayed") == "true"
}

// mustWrite posts body to key's increment route on p and returns the answer.
func (p *proc) mustWrite(t *testing.T, key, body string) counterAnswer {
	t.Helper()
	status, b, _, err := p.call(context.Background(), http.MethodPost, "/counters/"+key+"/increment", body, nil)
	if err != nil || status != http.StatusOK {
		t.Fatalf("POST /counters/%s/increment %s on %s: %d %s %v", key, body, p.name, status, b, err)
	}
	var c counterAnswer
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// listed returns the keys p lists under prefix.
func listed(p *proc, prefix string) (map[string]counterAnswer, error) {
	items, _, err := p.listAll(prefix, 1000)
	out := map[string]counterAnswer{}
	for _, it := range items {
		out[it.Key] = it
	}
	return out, err
}

// TestDeleteConvergesEverywhere deletes a key on one node while clients
// keep incrementing it on the two others. Reset wins by generation: a
// write answered with a value of the deleted generation is dropped
// everywhere, one answered after its node had the delete counts from 0.
// So after quiescence every node reports exactly the acknowledged writes
// of the new generation; and later writes count on top of that.
func TestDeleteConvergesEverywhere(t *testing.T) {
	nodes := startCluster(t, 3)
	ctx := context.Background()
	const key, floor = "quota", 1000 // the deleted generation reads ≥ floor
	for i := 0; i < 10; i++ {
		if err := nodes[i%3].add(ctx, key, floor/10); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range nodes {
		waitFor(t, 5*time.Second, func() error { return expectValue(p, key, floor) }, true)
	}

	var (
		mu                   sync.Mutex
		oldGen, newGen, lost int64 // acknowledged in the deleted generation, in the new one; in doubt
		afterAll             atomic.Int64
		everywhere           atomic.Bool // the delete has reached every node
	)
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(p *proc) {
			defer wg.Done()
			for n := 0; n < 150 && wctx.Err() == nil; n++ { // 600 writes at most: the new generation stays below floor
				v, outcome := incrementOutcome(ctx, p, key, `{"amount":1}`)
				mu.Lock()
				switch {
				case outcome == "in doubt":
					lost++
				case outcome != "acked":
					t.Errorf("write refused by %s", p.name)
				case v >= floor:
					oldGen++
				default:
					newGen++
					if everywhere.Load() {
						afterAll.Add(1)
					}
				}
				mu.Unlock()
				time.Sleep(time.Millisecond) // spread the writes around the delete
			}
		}(nodes[1+w%2])
	}
	waitFor(t, 5*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if oldGen < 20 {
			return fmt.Errorf("%d writes before the delete", oldGen)
		}
		return nil
	}, true)
	deleted, _ := nodes[0].del(t, key, nil)
	if !deleted {
		t.Fatal("DELETE of a live key answered deleted: false")
	}
	if v, err := nodes[0].value(key); err != nil || v >= floor {
		t.Fatalf("%s reads %d (%v) right after its own delete", nodes[0].name, v, err)
	}
	// The delete reaches every node: each reads the new generation.
	reached := time.Now()
	waitFor(t, 5*time.Second, func() error {
		for _, p := range nodes {
			if v, err := p.value(key); err != nil || v >= floor {
				return fmt.Errorf("%s: %s = %d (%v): the delete has not arrived", p.name, key, v, err)
			}
		}
		return nil
	}, true)
	everywhere.Store(true)
	t.Logf("the delete reached every node within %v", time.Since(reached).Round(time.Millisecond))
	// Let writes go on after that, then stop.
	waitFor(t, 10*time.Second, func() error {
		if afterAll.Load() < 50 {
			mu.Lock()
			defer mu.Unlock()
			if oldGen+newGen+lost >= 600 {
				return nil // the writers ran out
			}
			return fmt.Errorf("%d writes after the delete reached every node", afterAll.Load())
		}
		return nil
	}, true)
	stop()
	wg.Wait()
	if afterAll.Load() == 0 {
		t.Fatal("no write was made after the delete had reached every node")
	}
	mu.Lock()
	want := newGen
	t.Logf("writes concurrent with the delete: %d acknowledged in the deleted generation (dropped), %d in the new one (%d of them after the delete reached every node), %d in doubt",
		oldGen, newGen, afterAll.Load(), lost)
	mu.Unlock()
	var got int64
	waitFor(t, 5*time.Second, func() error {
		v0, err := nodes[0].value(key)
		if err != nil {
			return err
		}
		for _, p := range nodes[1:] {
			if err := expectValue(p, key, v0); err != nil {
				return err
			}
		}
		if v0 < want || v0 > want+lost {
			return fmt.Errorf("every node reads %d; the new generation had %d acknowledged writes, %d in doubt", v0, want, lost)
		}
		got = v0
		return nil
	}, true)
	// Later writes count on top, on every node; a second delete empties
	// the key everywhere, listing included.
	for _, p := range nodes {
		if err := p.add(ctx, key, 1); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range nodes {
		waitFor(t, 5*time.Second, func() error { return expectValue(p, key, got+3) }, true)
	}
	if deleted, _ := nodes[2].del(t, key, nil); !deleted {
		t.Fatal("second delete answered deleted: false")
	}
	for _, p := range nodes {
		waitFor(t, 5*time.Second, func() error {
			if err := expectValue(p, key, 0); err != nil {
				return err
			}
			if l, err := listed(p, ""); err != nil || len(l) != 0 {
				return fmt.Errorf("%s lists %v (%v) after the delete", p.name, l, err)
			}
			return nil
		}, true)
	}
	if deleted, _ := nodes[1].del(t, key, nil); deleted {
		t.Fatal("delete of a deleted key answered deleted: true")
	}
}

// TestLifecycleCLIVerbs runs inc --ttl, ttl, persist, keys and del against
// a real node: their output and exit codes.
func TestLifecycleCLIVerbs(t *testing.T) {
	p := startNode(t, "solo", "")
	env := []string{"DCOUNTER_ADDR=" + p.HTTP}
	cli := func(want int, args ...string) string {
		t.Helper()
		out, errOut, code := runCLI(t, env, args...)
		if code != want {
			t.Fatalf("dcounter %v: exit %d (stdout %q, stderr %q), want %d", args, code, out, errOut, want)
		}
		if want != 0 {
			return strings.TrimSpace(errOut)
		}
		return strings.TrimSpace(out)
	}
	ttlOf := func(key string) time.Duration {
		t.Helper()
		s := cli(0, "ttl", key)
		if s == "none" {
			return 0
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("dcounter ttl %s printed %q", key, s)
		}
		return d
	}
	within := func(d, lo, hi time.Duration) {
		t.Helper()
		if d < lo || d > hi {
			t.Fatalf("time left %v, want within [%v, %v]", d, lo, hi)
		}
	}
	if got := cli(0, "inc", "win", "--ttl", "60s"); got != "1" {
		t.Fatalf("inc --ttl printed %q", got)
	}
	within(ttlOf("win"), 50*time.Second, 60*time.Second)
	cli(0, "inc", "win", "--ttl", "10s") // if_none: the window keeps its expiry
	within(ttlOf("win"), 50*time.Second, 60*time.Second)
	if got := cli(0, "inc", "win", "--by", "3", "--ttl", "10s", "--ttl-always"); got != "5" {
		t.Fatalf("inc --ttl-always printed %q", got)
	}
	within(ttlOf("win"), 5*time.Second, 10*time.Second)
	within(func() time.Duration {
		d, err := time.ParseDuration(cli(0, "ttl", "win", "120"))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}(), 110*time.Second, 120*time.Second)
	if got := cli(0, "persist", "win"); got != "5" {
		t.Fatalf("persist printed %q, want the value 5", got)
	}
	if got := cli(0, "ttl", "win"); got != "none" {
		t.Fatalf("ttl after persist printed %q", got)
	}
	cli(0, "inc", "other", "--by", "7")
	cli(0, "ttl", "other", "90s")
	keys := strings.Split(cli(0, "keys"), "\n")
	if len(keys) != 2 || !strings.HasPrefix(keys[0], "other 7 1m") || keys[1] != "win 5" {
		t.Fatalf("dcounter keys printed %q", keys)
	}
	if got := cli(0, "keys", "w"); got != "win 5" {
		t.Fatalf("dcounter keys w printed %q", got)
	}
	if got := cli(0, "keys", "--limit", "1"); !strings.HasPrefix(got, "other 7 ") || strings.Contains(got, "\n") {
		t.Fatalf("dcounter keys --limit 1 printed %q", got)
	}
	var item counterAnswer
	if err := json.Unmarshal([]byte(cli(0, "keys", "o", "--json")), &item); err != nil || item.Key != "other" || item.Value != 7 || item.TTLMs <= 0 {
		t.Fatalf("dcounter keys o --json: %+v %v", item, err)
	}
	if got := cli(0, "del", "win"); got != "deleted" {
		t.Fatalf("del printed %q", got)
	}
	if got := cli(0, "del", "win"); got != "not found" {
		t.Fatalf("second del printed %q", got)
	}
	if got := cli(0, "get", "win"); got != "0" {
		t.Fatalf("get after del printed %q", got)
	}
	if got := cli(0, "ttl", "win"); got != "none" {
		t.Fatalf("ttl of a deleted key printed %q", got)
	}
	if got := cli(0, "keys"); !strings.HasPrefix(got, "other 7 ") || strings.Contains(got, "win") {
		t.Fatalf("keys after del printed %q", got)
	}
	// A key not live cannot be given or lose an expiry: exit 1.
	for _, args := range [][]string{{"ttl", "win", "10"}, {"persist", "win"}, {"ttl", "never", "10"}} {
		if msg := cli(1, args...); !strings.Contains(msg, "not found") && !strings.Contains(msg, "404") {
			t.Errorf("dcounter %v: stderr %q", args, msg)
		}
	}
	// Bad usage: exit 2.
	for _, args := range [][]string{
		{"del"}, {"del", "a", "b"}, {"ttl"}, {"ttl", "a", "1", "2"}, {"ttl", "a", "soon"}, {"ttl", "a", "0"},
		{"persist"}, {"persist", "a", "b"}, {"keys", "a", "b"}, {"keys", "--limit", "-1"}, {"inc", "--ttl-always"},
	} {
		cli(2, args...)
	}
	// A short expiry, end to end: the key reads 0, is unlisted, and a
	// write counts from 0 again.
	cli(0, "inc", "blink", "--by", "9", "--ttl", "1s")
	waitFor(t, 5*time.Second, func() error {
		if got := cli(0, "get", "blink"); got != "0" {
			return fmt.Errorf("blink = %s", got)
		}
		if got := cli(0, "keys", "b"); got != "" {
			return fmt.Errorf("keys b printed %q", got)
		}
		return nil
	}, true)
	if got := cli(0, "inc", "blink"); got != "1" {
		t.Fatalf("inc after expiry printed %q, want 1", got)
	}
	if got := cli(0, "ttl", "blink"); got != "none" {
		t.Fatalf("the new generation inherited an expiry: %q", got)
	}
}

// gatewayHealthy waits for the gateway to see n healthy nodes.
func gatewayHealthy(t *testing.T, gw *proc, n int) {
	t.Helper()
	waitFor(t, 10*time.Second, func() error {
		b, err := gw.get("/health")
		if err == nil && !strings.Contains(string(b), fmt.Sprintf(`"healthy_nodes":%d`, n)) {
			err = fmt.Errorf("gateway health: %s", b)
		}
		return err
	}, true)
}

// TestTTLThroughGateway: writes with a TTL, deletes and TTL changes through
// the gateway, retried with their Idempotency-Key, are replayed, not applied
// again; and a listing through the gateway pages over every key once.
func TestTTLThroughGateway(t *testing.T) {
	nodes := startCluster(t, 3)
	gw := startGateway(t, nodes)
	gatewayHealthy(t, gw, 3)
	ctx := context.Background()
	keyed := func(idem string) http.Header { return http.Header{"Idempotency-Key": {idem}} }
	answer := func(what string, status int, b []byte, err error) counterAnswer {
		t.Helper()
		if err != nil || status != http.StatusOK {
			t.Fatalf("%s: %d %s %v", what, status, b, err)
		}
		var c counterAnswer
		if err := json.Unmarshal(b, &c); err != nil {
			t.Fatal(err)
		}
		return c
	}

	// Write with a TTL, keyed, twice.
	for i := 0; i < 2; i++ {
		status, b, h, err := gw.call(ctx, http.MethodPost, "/counters/win/increment", `{"amount":5,"ttl_seconds":60}`, keyed("w-1"))
		c := answer("keyed write with a TTL", status, b, err)
		if replayed := h.Get("Idempotent-Replayed") == "true"; c.Value != 5 || c.TTLMs <= 55_000 || c.TTLMs > 60_000 || replayed != (i == 1) {
			t.Fatalf("attempt %d: %+v, replayed %v", i+1, c, replayed)
		}
	}
	for _, p := range nodes {
		waitFor(t, 5*time.Second, func() error {
			c, err := p.counter("win")
			if err == nil && (c.Value != 5 || c.TTLMs <= 50_000 || c.TTLMs > 60_000) {
				err = fmt.Errorf("%s: %+v", p.name, c)
			}
			return err
		}, true)
	}
	// The same key for another request is refused.
	if status, _, _, _ := gw.call(ctx, http.MethodPost, "/counters/win/increment", `{"amount":5,"ttl_seconds":30}`, keyed("w-1")); status != http.StatusUnprocessableEntity {
		t.Fatalf("reused Idempotency-Key with another TTL: status %d, want 422", status)
	}

	// PUT and DELETE .../ttl, keyed and replayed.
	for i := 0; i < 2; i++ {
		status, b, h, err := gw.call(ctx, http.MethodPut, "/counters/win/ttl", `{"seconds":600}`, keyed("t-1"))
		c := answer("PUT ttl", status, b, err)
		if replayed := h.Get("Idempotent-Replayed") == "true"; c.Value != 5 || c.TTLMs <= 590_000 || replayed != (i == 1) {
			t.Fatalf("PUT ttl attempt %d: %+v replayed %v", i+1, c, replayed)
		}
	}
	// Every node has the new expiry before it is removed: the gateway
	// balances unkeyed requests, and a removal taken by a node that has
	// not seen the PUT would be concurrent with it, and lose to it (the
	// same version; a deadline wins over none).
	for _, p := range nodes {
		waitFor(t, 5*time.Second, func() error {
			c, err := p.counter("win")
			if err == nil && c.TTLMs <= 590_000 {
				err = fmt.Errorf("%s: %+v", p.name, c)
			}
			return err
		}, true)
	}
	if status, b, _, err := gw.call(ctx, http.MethodPut, "/counters/absent/ttl", `{"seconds":10}`, nil); err != nil || status != http.StatusNotFound {
		t.Fatalf("PUT ttl of an absent key: %d %s %v, want 404", status, b, err)
	}
	status, b, _, err := gw.call(ctx, http.MethodDelete, "/counters/win/ttl", "", nil)
	if c := answer("DELETE ttl", status, b, err); c.Value != 5 || c.TTLMs != 0 {
		t.Fatalf("DELETE ttl: %+v", c)
	}
	for _, p := range nodes {
		waitFor(t, 5*time.Second, func() error {
			c, err := p.counter("win")
			if err == nil && (c.Value != 5 || c.TTLMs != 0) {
				err = fmt.Errorf("%s after persist: %+v", p.name, c)
			}
			return err
		}, true)
	}

	// DELETE, keyed, twice: the retry is replayed (same answer), and a
	// write made after the delete reached every node is not undone by it.
	// (The gateway balances unkeyed requests, so a write sent before that
	// may reach a node that has not yet heard of the delete: it belongs to
	// the deleted generation and is dropped.)
	if deleted, replayed := gw.del(t, "win", keyed("d-1")); !deleted || replayed {
		t.Fatalf("first delete: deleted %v replayed %v", deleted, replayed)
	}
	for _, p := range nodes {
		waitFor(t, 5*time.Second, func() error { return expectValue(p, "win", 0) }, true)
	}
	status, b, _, err = gw.call(ctx, http.MethodPost, "/counters/win/increment", `{"amount":2}`, nil)
	if c := answer("write after delete", status, b, err); c.Value != 2 {
		t.Fatalf("write after the delete: %+v, want 2", c)
	}
	if deleted, replayed := gw.del(t, "win", keyed("d-1")); !deleted || !replayed {
		t.Fatalf("retried delete: deleted %v replayed %v, want true true", deleted, replayed)
	}
	for _, p := range nodes {
		waitFor(t, 5*time.Second, func() error { return expectValue(p, "win", 2) }, true)
	}

	// 250 keys through the gateway, listed through it in pages of 100.
	const n = 250
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := 0; w < 10; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += 10 {
				if err := gw.add(ctx, fmt.Sprintf("page:%03d", i), int64(i+1)); err != nil {
					failed.Add(1)
				}
			}
		}(w)
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d writes failed", failed.Load())
	}
	for _, p := range nodes {
		waitFor(t, 5*time.Second, func() error {
			items, _, err := p.listAll("page:", 1000)
			if err == nil && len(items) != n {
				err = fmt.Errorf("%s lists %d keys", p.name, len(items))
			}
			return err
		}, true)
	}
	items, pages, err := gw.listAll("page:", 100)
	if err != nil {
		t.Fatal(err)
	}
	if pages != 3 || len(items) != n {
		t.Fatalf("listing through the gateway: %d keys in %d pages, want %d in 3", len(items), pages, n)
	}
	for i, it := range items {
		if want := fmt.Sprintf("page:%03d", i); it.Key != want || it.Value != int64(i+1) {
			t.Fatalf("item %d: %+v, want %s = %d", i, it, want, i+1)
		}
	}
	all, _, err := gw.listAll("", 100)
	if err != nil || len(all) != n+1 {
		t.Fatalf("listing everything: %d keys (%v), want %d", len(all), err, n+1)
	}
}

// walSize sums the sizes of the files in dir's wal directory.
func walSize(t *testing.T, dataDir string) int64 {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dataDir, "wal"))
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, e := range ents {
		if fi, err := e.Info(); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// snapshotHolds reports whether the newest snapshot in dataDir holds s.
func snapshotHolds(t *testing.T, dataDir, s string) (bool, error) {
	t.Helper()
	snaps, _ := filepath.Glob(filepath.Join(dataDir, "wal", "*.snap"))
	if len(snaps) == 0 {
		return false, fmt.Errorf("no snapshot in %s", dataDir)
	}
	b, err := os.ReadFile(snaps[len(snaps)-1]) // names are zero-padded LSNs
	if err != nil {
		return false, err // replaced meanwhile
	}
	return bytes.Contains(b, []byte(s)), nil
}

// TestLifecycleSurvivesRestart kills a node with SIGKILL and restarts it on
// its data dir: keys keep their values and deadlines, deleted keys stay
// deleted, persisted keys stay persistent; expired keys are reclaimed, and
// with a short --reclaim-horizon the snapshot forgets them and the log
// directory shrinks.
func TestLifecycleSurvivesRestart(t *testing.T) {
	p := startNode(t, "life", "", "--max-clock-skew", "250ms", "--reclaim-horizon", "2s", "--snapshot-interval", "200ms")
	p.mustWrite(t, "ttl:a", `{"amount":7,"ttl_seconds":120}`)
	p.mustWrite(t, "ttl:b", `{"amount":3}`)
	if status, b, _, err := p.call(context.Background(), http.MethodPut, "/counters/ttl:b/ttl", `{"seconds":90}`, nil); err != nil || status != 200 {
		t.Fatalf("PUT ttl: %d %s %v", status, b, err)
	}
	p.mustWrite(t, "del:x", `{"amount":5,"ttl_seconds":120}`)
	p.del(t, "del:x", nil)
	p.mustWrite(t, "keep:p", `{"amount":9,"ttl_seconds":60}`)
	if status, b, _, err := p.call(context.Background(), http.MethodDelete, "/counters/keep:p/ttl", "", nil); err != nil || status != 200 {
		t.Fatalf("DELETE ttl: %d %s %v", status, b, err)
	}
	p.mustWrite(t, "plain", `{"amount":4}`)
	// Many keys that expire soon, to weigh on the snapshot.
	const short = 2000
	pad := strings.Repeat("x", 60)
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < short; i += 16 {
				if _, outcome := incrementOutcome(context.Background(), p, fmt.Sprintf("short:%04d:%s", i, pad), `{"amount":1,"ttl_seconds":4}`); outcome != "acked" {
					t.Errorf("short key %d: %s", i, outcome)
				}
			}
		}(w)
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	wroteShort := time.Now()
	var before int64
	waitFor(t, 5*time.Second, func() error {
		holds, err := snapshotHolds(t, p.DataDir, "short:1999:")
		if err == nil && !holds {
			err = fmt.Errorf("the snapshot does not hold the last short key yet")
		}
		before = walSize(t, p.DataDir)
		return err
	}, true)
	t.Logf("log directory with %d short-lived keys in the snapshot: %d bytes", short, before)

	type kept struct {
		value    int64
		deadline time.Time // zero: none
	}
	want := map[string]kept{"ttl:a": {value: 7}, "ttl:b": {value: 3}, "keep:p": {value: 9}, "plain": {value: 4}}
	for k, w := range want {
		c, err := p.counter(k)
		if err != nil {
			t.Fatal(err)
		}
		if c.Value != w.value {
			t.Fatalf("%s = %d, want %d", k, c.Value, w.value)
		}
		if c.TTLMs > 0 {
			w.deadline = time.Now().Add(time.Duration(c.TTLMs) * time.Millisecond)
		}
		want[k] = w
	}
	if !want["ttl:a"].deadline.After(time.Now()) || !want["ttl:b"].deadline.After(time.Now()) || !want["keep:p"].deadline.IsZero() {
		t.Fatalf("expiries before the restart: %+v", want)
	}
	check := func(when string) {
		t.Helper()
		for k, w := range want {
			c, err := p.counter(k)
			if err != nil {
				t.Fatal(err)
			}
			if c.Value != w.value {
				t.Fatalf("%s: %s = %d, want %d", when, k, c.Value, w.value)
			}
			if w.deadline.IsZero() != (c.TTLMs == 0) {
				t.Fatalf("%s: %s has ttl_ms %d, want a deadline at %v", when, k, c.TTLMs, w.deadline)
			}
			if c.TTLMs > 0 {
				d := time.Now().Add(time.Duration(c.TTLMs) * time.Millisecond)
				if off := d.Sub(w.deadline); off < -250*time.Millisecond || off > 250*time.Millisecond {
					t.Fatalf("%s: %s's deadline moved by %v", when, k, off)
				}
			}
		}
		if v, err := p.value("del:x"); err != nil || v != 0 {
			t.Fatalf("%s: deleted key reads %d (%v)", when, v, err)
		}
		l, err := listed(p, "")
		if err != nil {
			t.Fatal(err)
		}
		for k := range want {
			if _, ok := l[k]; !ok {
				t.Fatalf("%s: %s not listed", when, k)
			}
		}
		if _, ok := l["del:x"]; ok {
			t.Fatalf("%s: the deleted key is listed", when)
		}
	}
	p.kill()
	p.start()
	check("after kill -9 and restart")

	// The short keys expire, then are freed and, past the horizon,
	// forgotten: the snapshot no longer holds them and the log shrinks.
	waitFor(t, time.Until(wroteShort.Add(4*time.Second))+5*time.Second, func() error {
		l, err := listed(p, "short:")
		if err == nil && len(l) > 0 {
			err = fmt.Errorf("%d short keys still listed: %v", len(l), l)
		}
		return err
	}, true)
	shrunk := time.Now()
	var after int64
	waitFor(t, 15*time.Second, func() error {
		holds, err := snapshotHolds(t, p.DataDir, "short:")
		if err == nil && holds {
			err = fmt.Errorf("the snapshot still holds short keys")
		}
		after = walSize(t, p.DataDir)
		if err == nil && after >= before {
			err = fmt.Errorf("log directory %d bytes, %d before", after, before)
		}
		return err
	}, true)
	t.Logf("log directory %d bytes (%.0f%% of before), %v after the short keys were unlisted", after, 100*float64(after)/float64(before), time.Since(shrunk).Round(time.Millisecond))
	p.kill()
	p.start()
	check("after reclaim and a second kill -9")
	if l, err := listed(p, "short:"); err != nil || len(l) > 0 {
		t.Fatalf("after the restart %d short keys are listed (%v)", len(l), err)
	}
	if v, err := p.value(fmt.Sprintf("short:%04d:%s", 7, pad)); err != nil || v != 0 {
		t.Fatalf("an expired key reads %d (%v) after the restart", v, err)
	}
	if c := p.mustWrite(t, fmt.Sprintf("short:%04d:%s", 7, pad), `{"amount":1}`); c.Value != 1 || c.TTLMs != 0 {
		t.Fatalf("a write to a reclaimed key: %+v, want 1 with no expiry", c)
	}
}

// TestClockOffsetNodeRefusesTTLWrites: in a cluster where one node's clock
// is a day ahead, that node refuses (503) writes with a TTL, writes to a
// key with a deadline and TTL changes, but takes plain writes and deletes;
// the other nodes are unaffected, and the key with a deadline stays live on
// them.
func TestClockOffsetNodeRefusesTTLWrites(t *testing.T) {
	skew := []string{"--max-clock-skew", "1s"}
	n1 := startNode(t, "n1", "", skew...)
	n2 := startNode(t, "n2", n1.Gossip, skew...)
	odd := startNode(t, "odd", n1.Gossip, append(skew, "--clock-offset", "24h")...)
	nodes := []*proc{n1, n2, odd}
	for _, p := range nodes {
		waitFor(t, 10*time.Second, func() error { return memberCount(p, 3) }, true)
	}
	for _, tc := range []struct {
		observer *proc
		member   string
		want     float64
	}{{odd, "n1", -86400}, {odd, "n2", -86400}, {n1, "odd", 86400}, {n2, "odd", 86400}, {n1, "n2", 0}} {
		waitFor(t, 10*time.Second, func() error {
			got, err := memberOffset(tc.observer, tc.member)
			if err == nil && (got > tc.want+1 || got < tc.want-1) {
				err = fmt.Errorf("%s estimates %s's clock offset at %vs, want about %vs", tc.observer.name, tc.member, got, tc.want)
			}
			return err
		}, true)
	}
	ctx := context.Background()
	status := func(p *proc, method, path, body string) int {
		t.Helper()
		s, b, _, err := p.call(ctx, method, path, body, nil)
		if err != nil {
			t.Fatal(err)
		}
		if s != 200 && s != 503 {
			t.Fatalf("%s %s on %s: %d %s", method, path, p.name, s, b)
		}
		return s
	}

	// A key with a deadline, set by a good clock; the odd node learns it
	// (and, its clock being past it, reads the key as expired).
	n1.mustWrite(t, "win", `{"amount":1}`)
	n1.mustWrite(t, "plain", `{"amount":1}`)
	for _, p := range nodes {
		waitFor(t, 5*time.Second, func() error {
			return allReport([]*proc{p}, []string{"win", "plain"}, map[string]int64{"win": 1, "plain": 1})
		}, true)
	}
	if s := status(n1, http.MethodPut, "/counters/win/ttl", `{"seconds":600}`); s != 200 {
		t.Fatalf("PUT ttl on n1: %d", s)
	}
	waitFor(t, 5*time.Second, func() error { return expectValue(odd, "win", 0) }, true)

	for _, tc := range []struct{ method, path, body string }{
		{http.MethodPost, "/counters/fresh/increment", `{"amount":1,"ttl_seconds":60}`},
		{http.MethodPost, "/counters/plain/increment", `{"amount":1,"ttl_seconds":60}`},
		{http.MethodPost, "/counters/win/increment", `{"amount":1}`},
		{http.MethodPut, "/counters/plain/ttl", `{"seconds":60}`},
		{http.MethodDelete, "/counters/plain/ttl", ""},
	} {
		if s := status(odd, tc.method, tc.path, tc.body); s != 503 {
			t.Errorf("%s %s %s on the node whose clock is a day ahead: %d, want 503", tc.method, tc.path, tc.body, s)
		}
	}
	if s := status(odd, http.MethodPost, "/counters/plain/increment", `{"amount":2}`); s != 200 {
		t.Errorf("plain write on the odd node: %d, want 200", s)
	}
	if s := status(odd, http.MethodPost, "/counters/gone/increment", `{"amount":2}`); s != 200 {
		t.Errorf("plain write of a new key on the odd node: %d, want 200", s)
	}
	if deleted, _ := odd.del(t, "gone", nil); !deleted {
		t.Error("delete on the odd node answered deleted: false")
	}

	// The good nodes take all of it, and the key with a deadline stays
	// live on them with its expiry (sampled for a few reclaim and
	// anti-entropy rounds of the odd node, whose clock is past it).
	for _, p := range []*proc{n1, n2} {
		for _, tc := range []struct{ method, path, body string }{
			{http.MethodPost, "/counters/fresh/increment", `{"amount":1,"ttl_seconds":60}`},
			{http.MethodPut, "/counters/plain/ttl", `{"seconds":600}`},
			{http.MethodDelete, "/counters/plain/ttl", ""},
		} {
			if s := status(p, tc.method, tc.path, tc.body); s != 200 {
				t.Errorf("%s %s on %s: %d, want 200", tc.method, tc.path, p.name, s)
			}
		}
	}
	for _, p := range nodes {
		waitFor(t, 5*time.Second, func() error {
			if err := expectValue(p, "plain", 3); err != nil {
				return err
			}
			if l, err := listed(p, "gone"); err != nil || len(l) > 0 {
				return fmt.Errorf("%s lists %v (%v)", p.name, l, err)
			}
			return nil
		}, true)
	}
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); {
		for _, p := range []*proc{n1, n2} {
			c, err := p.counter("win")
			if err != nil {
				t.Fatal(err)
			}
			if c.Value != 1 || c.TTLMs < 580_000 {
				t.Fatalf("%s: win = %+v, want 1 with ~10 min left: the odd node's clock ended it", p.name, c)
			}
		}
		time.Sleep(100 * time.Millisecond) // sampling an invariant, not waiting for a condition
	}
	if !strings.Contains(odd.log.String(), "clock") {
		t.Error("the odd node does not log its clock")
	}
}

// TestLifecycleKill9UnderLoad kills a node with SIGKILL while clients write
// keys with a TTL and delete them, with snapshots written every 20 ms, five
// times: after every restart each acknowledged write still has its expiry
// and each acknowledged delete still holds, whichever snapshot or log
// record carried them.
func TestLifecycleKill9UnderLoad(t *testing.T) {
	p := startNode(t, "victim", "", "--snapshot-interval", "20ms")
	type outcome struct {
		mu      sync.Mutex
		expiry  []string // acknowledged writes with a TTL, not deleted
		deleted []string // acknowledged deletes
	}
	var o outcome
	for round := 0; round < 5; round++ {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for w := 0; w < 16; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; ctx.Err() == nil; i++ {
					key := fmt.Sprintf("r%d-w%d-%d", round, w, i)
					if _, out := incrementOutcome(context.Background(), p, key, `{"amount":1,"ttl_seconds":600}`); out != "acked" {
						return
					}
					if i%2 == 1 {
						status, _, _, err := p.call(context.Background(), http.MethodDelete, "/counters/"+key, "", nil)
						if err != nil || status != http.StatusOK {
							return
						}
						o.mu.Lock()
						o.deleted = append(o.deleted, key)
						o.mu.Unlock()
						continue
					}
					o.mu.Lock()
					o.expiry = append(o.expiry, key)
					o.mu.Unlock()
				}
			}(w)
		}
		time.Sleep(time.Duration(150+50*round) * time.Millisecond) // a moment under load
		p.kill()
		cancel()
		wg.Wait()
		p.start()
		o.mu.Lock()
		for _, k := range o.expiry {
			c, err := p.counter(k)
			if err != nil {
				t.Fatal(err)
			}
			if c.Value != 1 || c.TTLMs <= 0 || c.TTLMs > 600_000 {
				t.Fatalf("round %d: %s = %+v after the restart, want 1 with its expiry", round, k, c)
			}
		}
		for _, k := range o.deleted {
			if v, err := p.value(k); err != nil || v != 0 {
				t.Fatalf("round %d: deleted %s reads %d (%v) after the restart", round, k, v, err)
			}
		}
		t.Logf("round %d: %d writes with a TTL and %d deletes acknowledged so far, all intact", round, len(o.expiry), len(o.deleted))
		o.mu.Unlock()
	}
}
