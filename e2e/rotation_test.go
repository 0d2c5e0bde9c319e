package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/clusterkey"
)

// gatewayLoad writes through a gateway and sorts every write that was not
// acknowledged by the step and the process restarting at the time, and by
// kind: "connection refused" (the gateway was down: certainly not
// applied), "no answer" (the connection broke mid-request: in doubt), or
// the gateway's error status — 502 is its own "the node failed after the
// request was sent: it may or may not have been applied".
type gatewayLoad struct {
	mu         sync.Mutex
	step       string
	restarting string // the process being restarted, "" between restarts
	acked      int
	failed     map[string]int // by "step/process: kind"
	// failedElsewhere counts the writes not acknowledged while the
	// gateway itself was up throughout (another process restarting, or
	// none).
	failedElsewhere int
}

func (g *gatewayLoad) setPhase(step, restarting string) {
	g.mu.Lock()
	g.step, g.restarting = step, restarting
	g.mu.Unlock()
}

func (g *gatewayLoad) ackedCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.acked
}

func (g *gatewayLoad) run(ctx context.Context, gw *proc, keys []string, l *ledger, workers int) *sync.WaitGroup {
	g.failed = map[string]int{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(time.Now().UnixNano())))
			for ctx.Err() == nil {
				key := keys[rng.IntN(len(keys))]
				amount := int64(rng.IntN(9) + 1)
				wctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				err := gw.add(wctx, key, amount)
				cancel()
				l.record(key, amount, err) // any failure counts as in doubt there
				g.mu.Lock()
				kind := ""
				var ue *url.Error
				switch {
				case err == nil:
					g.acked++
				case errors.Is(err, syscall.ECONNREFUSED):
					kind = "connection refused"
				case errors.As(err, &ue):
					kind = "no answer"
				default:
					kind = err.Error()
				}
				if kind != "" {
					g.failed[fmt.Sprintf("%s/%s: %s", g.step, g.restarting, kind)]++
					if g.restarting != gw.name {
						g.failedElsewhere++
					}
				}
				g.mu.Unlock()
				if err != nil {
					time.Sleep(2 * time.Millisecond) // back off while the gateway restarts
				}
			}
		}(uint64(100 + w))
	}
	return &wg
}

// summarize returns the total of m's counts and m as sorted text.
func summarize(m map[string]int) (int, string) {
	var keys []string
	total := 0
	for k, n := range m {
		keys = append(keys, fmt.Sprintf("%s: %d", k, n))
		total += n
	}
	sort.Strings(keys)
	return total, strings.Join(keys, ", ")
}

// gatewaySees checks that the gateway at base, asked with an admin
// client, has all n nodes healthy, and has proven name since since.
func gatewaySees(c *http.Client, base string, n int, name string, since time.Time) error {
	resp, err := c.Get(base + "/nodes")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var ns []gatewayNode
	if err := json.NewDecoder(resp.Body).Decode(&ns); err != nil {
		return fmt.Errorf("gateway /nodes (%s): %w", resp.Status, err)
	}
	healthy := 0
	for _, x := range ns {
		if x.Status != "healthy" {
			continue
		}
		healthy++
		if x.Name == name {
			at, err := time.Parse(time.RFC3339Nano, x.LastCheck)
			if err != nil || !at.After(since) {
				return fmt.Errorf("the gateway has not checked %s since its restart (last check %q)", name, x.LastCheck)
			}
		}
	}
	if healthy != n {
		return fmt.Errorf("the gateway has %d healthy nodes of %d: %+v", healthy, n, ns)
	}
	return nil
}

// TestKeyRotationWithDiscoveryAndGateway rotates a whole deployment — a
// discovery server, five nodes and a gateway, all keyed, nodes and gateway
// requiring client tokens — from key A to key B by rolling restarts through
// the three documented steps, while clients write through the gateway (with
// a write token) and straight to the nodes. Every process is restarted once
// per step and is healthy again before the next one stops. No
// acknowledged write is lost, no node ever reports a member dead, no
// process logs a refusal for a key, and every write through the gateway is
// acknowledged while the gateway is up: only its own restarts cost writes
// (refused connections while it is down, and requests in flight when it
// stops), which the ledger counts as in doubt and the log reports.
//
// Order within a step does not matter, and that is the point of three
// steps: in "add B" everyone still signs with A, which everyone accepts;
// in "make B primary" everyone already accepts B (the previous step), so a
// restarted process may sign with B at once; in "remove A" everyone already
// signs with B, so a process may stop accepting A. The order used —
// discovery, the nodes, then the gateway — is the one an operator would
// follow (the servers before their clients), and every link is crossed with
// each mix of keyrings along the way: nodes and gateway signing discovery
// requests and verifying its answers, nodes proving membership to the
// gateway, the gateway signing the client identities it passes to nodes,
// and node-to-node gossip.
func TestKeyRotationWithDiscoveryAndGateway(t *testing.T) {
	start := time.Now()
	keyA, keyB := clusterkey.Generate(), clusterkey.Generate()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "cluster.key")
	setRing := func(ring string) { // what an operator edits; read at start only
		if err := os.WriteFile(keyFile, []byte(ring+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	setRing(keyA)
	authFile := filepath.Join(dir, "tokens")
	writeAuthFile(t, authFile, secWrite+" write loader", secAdmin+" admin watcher")
	adminClient := &http.Client{Timeout: client.Timeout, Transport: bearer{secAdmin, client.Transport}}
	writeClient := &http.Client{Timeout: client.Timeout, Transport: bearer{secWrite, client.Transport}}

	keyed := []string{"--cluster-key-file", keyFile}
	d := startKeyedDiscovery(t, "", keyed...)
	var nodes []*proc
	for i := 1; i <= 5; i++ {
		p := startKeyedNode(t, fmt.Sprintf("n%d", i), "", d.HTTP, append(keyed, "--auth-file", authFile)...)
		p.client = adminClient
		nodes = append(nodes, p)
	}
	for _, p := range nodes {
		waitFor(t, 15*time.Second, func() error { return everyoneSees(nodes, p.name, "alive") }, true)
	}
	gw := startKeyedGateway(t, "", nil, append(keyed, "--discovery", d.HTTP, "--auth-file", authFile)...)
	gw.client = writeClient
	waitFor(t, 15*time.Second, func() error { return gatewaySees(adminClient, gw.HTTP, 5, "", time.Time{}) }, true)

	keys := []string{"a", "b", "c", "default"}
	l := newLedger()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var gl gatewayLoad
	gl.setPhase("before", "")
	viaGateway := gl.run(ctx, gw, keys, l, 6)
	direct := load(ctx, nodes, keys, l, 2)
	var watch deadWatch
	watching := watch.run(ctx, nodes)

	// healthy waits until the restarted p is back in service everywhere
	// it matters, and a write through the gateway has been acknowledged
	// since.
	healthy := func(p *proc, restarted time.Time) {
		t.Helper()
		switch p {
		case d:
			// Every node heartbeats into the new server and the gateway
			// reads them all from it (it lists only discovered nodes).
			waitFor(t, 15*time.Second, func() error {
				if n := discoveryEntries(t, d); n != 5 {
					return fmt.Errorf("discovery lists %d nodes", n)
				}
				return nil
			}, true)
		case gw:
		default:
			for _, o := range nodes {
				waitFor(t, 15*time.Second, func() error { return everyoneSees([]*proc{o}, p.name, "alive") }, true)
			}
		}
		name := p.name
		if p == d || p == gw {
			name = ""
		}
		waitFor(t, 15*time.Second, func() error { return gatewaySees(adminClient, gw.HTTP, 5, name, restarted) }, true)
		before := gl.ackedCount()
		waitFor(t, 15*time.Second, func() error {
			if gl.ackedCount() == before {
				return errString("no write acknowledged through the gateway since the restart of " + p.name)
			}
			return nil
		}, true)
	}

	var refusals []string // every run's log, not only the last
	collect := func(p *proc) {
		for _, bad := range keyRefusals(p) {
			refusals = append(refusals, p.name+": "+bad)
		}
	}
	order := append(append([]*proc{d}, nodes...), gw)
	restarts := 0
	for _, step := range []struct{ name, ring string }{
		{"add B", keyA + "," + keyB},
		{"make B primary", keyB + "," + keyA},
		{"remove A", keyB},
	} {
		setRing(step.ring)
		for _, p := range order {
			gl.setPhase(step.name, p.name)
			p.stop(t)
			collect(p)
			restarted := time.Now()
			p.start()
			restarts++
			healthy(p, restarted)
			gl.setPhase(step.name, "")
		}
		t.Logf("%s: done on all 7 processes (%v)", step.name, time.Since(start).Round(time.Millisecond))
	}
	// Writes keep flowing on the rotated deployment.
	before := gl.ackedCount()
	waitFor(t, 10*time.Second, func() error {
		if n := gl.ackedCount() - before; n < 100 {
			return fmt.Errorf("%d writes acknowledged through the gateway since the rotation", n)
		}
		return nil
	}, true)
	cancel()
	viaGateway.Wait()
	direct.Wait()
	watching.Wait()

	final := agreedValues(t, nodes, keys, 10*time.Second)
	l.mu.Lock()
	ackedAll, doubtAll := int64(0), int64(0)
	for _, v := range l.acked {
		ackedAll += v
	}
	for _, v := range l.inDoubt {
		doubtAll += v
	}
	l.mu.Unlock()
	l.check(t, final)
	for _, p := range order {
		collect(p)
	}
	if len(refusals) != 0 {
		t.Errorf("key refusals logged during the rotation:\n%s", strings.Join(refusals, "\n"))
	}
	if len(watch.seen) != 0 {
		t.Errorf("members reported dead during the rotation:\n%s", strings.Join(watch.seen, "\n"))
	}
	gl.mu.Lock()
	failed, failedBy := summarize(gl.failed)
	acked, elsewhere := gl.acked, gl.failedElsewhere
	gl.mu.Unlock()
	if acked == 0 {
		t.Fatal("no write was acknowledged through the gateway: the test exercised nothing")
	}
	// While the gateway itself is up, a correct rotation costs no write:
	// nodes drain before they stop, and a restarted discovery server
	// takes no node out of rotation.
	if elsewhere != 0 {
		t.Errorf("%d writes through the gateway failed while it was up: %s", elsewhere, failedBy)
	}
	for k := range gl.failed {
		if !strings.HasSuffix(k, ": connection refused") && !strings.HasSuffix(k, ": no answer") {
			t.Errorf("the gateway answered an error during a correct rotation: %s", k)
		}
	}
	t.Logf("%d restarts in %v; through the gateway: %d writes acknowledged, %d not (%s); "+
		"sum of acknowledged amounts %d (gateway and direct), in doubt %d, none lost; %d /nodes polls, no member dead",
		restarts, time.Since(start).Round(time.Millisecond), acked, failed, failedBy, ackedAll, doubtAll, watch.polls)
}
