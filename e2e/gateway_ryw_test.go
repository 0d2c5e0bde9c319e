package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// rywRound increments key through gw, then reads it through gw (with
// ?min=V when min is set, V the value the write returned). It reports
// whether the read was stale (below V) and whether either request failed.
func rywRound(ctx context.Context, gw *proc, key string, min bool) (stale, failed bool) {
	code, body, _, err := gw.call(ctx, "POST", "/counters/"+key+"/increment", "", nil)
	if err != nil || code != http.StatusOK {
		return false, true
	}
	var w counterAnswer
	if json.Unmarshal(body, &w) != nil {
		return false, true
	}
	path := "/counters/" + key
	if min {
		path += "?min=" + strconv.FormatInt(w.Value, 10)
	}
	code, body, _, err = gw.call(ctx, "GET", path, "", nil)
	if err != nil || code != http.StatusOK {
		return false, true
	}
	var r counterAnswer
	if json.Unmarshal(body, &r) != nil {
		return false, true
	}
	return r.Value < w.Value, false
}

// TestGatewayReadYourWrites runs rounds of "increment through the gateway,
// then read through the gateway": with every node healthy no read may be
// stale; with a node killed mid-run the stale-read rate is reported (plain
// reads and ?min reads).
func TestGatewayReadYourWrites(t *testing.T) {
	nodes := startCluster(t, 3)
	gw := startGateway(t, nodes, "--health-interval", "200ms")
	gatewayHealthy(t, gw, 3)
	ctx := context.Background()

	const rounds = 1000
	stale, failed := 0, 0
	for i := 0; i < rounds; i++ {
		s, f := rywRound(ctx, gw, fmt.Sprintf("ryw%d", i%16), false)
		if s {
			stale++
		}
		if f {
			failed++
		}
	}
	t.Logf("all nodes healthy: %d rounds, %d stale reads, %d failed", rounds, stale, failed)
	if stale != 0 || failed != 0 {
		t.Errorf("all nodes healthy: %d stale reads and %d failed rounds of %d, want none", stale, failed, rounds)
	}

	// Kill a node a third of the way through; the keys it was home of move.
	for _, min := range []bool{false, true} {
		name := map[bool]string{false: "plain reads", true: "?min reads"}[min]
		stale, failed = 0, 0
		for i := 0; i < rounds; i++ {
			if i == rounds/3 {
				if min {
					nodes[2].kill()
				} else {
					nodes[1].kill()
				}
			}
			s, f := rywRound(ctx, gw, fmt.Sprintf("kill%t%d", min, i%16), min)
			if s {
				stale++
			}
			if f {
				failed++
			}
		}
		t.Logf("one node killed mid-run, %s: %d rounds, %d stale reads (%.1f%%), %d failed rounds (%.1f%%)",
			name, rounds, stale, 100*float64(stale)/rounds, failed, 100*float64(failed)/rounds)
		if min && stale != 0 {
			t.Errorf("?min reads: %d stale reads, want none (a ?min read is answered at the minimum or fails)", stale)
		}
		if !min {
			nodes[1].start()
			waitFor(t, 10*time.Second, func() error { return memberCount(nodes[1], 3) }, true)
			gatewayHealthy(t, gw, 3)
		}
	}
}

var defaultGets = regexp.MustCompile(`dcounter_operations_total\{key_type="default",op="get",outcome="ok",protocol="http"\} (\d+)`)

// defaultReads is how many client reads of "default" p has counted.
func defaultReads(t *testing.T, p *proc) int {
	t.Helper()
	b, err := p.get("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m := defaultGets.FindSubmatch(b)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// TestGatewayHealthChecksAreNoClientReads: a node counts every counter read
// as a client operation; the gateway's health checks must not show up there.
// Only GET /nodes on the gateway reads "default", once per healthy node.
func TestGatewayHealthChecksAreNoClientReads(t *testing.T) {
	nodes := startCluster(t, 2)
	gw := startGateway(t, nodes, "--health-interval", "50ms")
	gatewayHealthy(t, gw, 2)
	asks := 0
	lastChecks := map[string]bool{}
	// Watch the gateway's checks go by: a few rounds, each a new last_check.
	waitFor(t, 10*time.Second, func() error {
		b, err := gw.get("/nodes")
		if err != nil {
			return err
		}
		asks++
		var ns []struct {
			LastCheck string `json:"last_check"`
			Value     *int64 `json:"value"`
		}
		if err := json.Unmarshal(b, &ns); err != nil {
			return err
		}
		for _, n := range ns {
			if n.Value == nil {
				return fmt.Errorf("/nodes shows no value: %s", b)
			}
		}
		lastChecks[ns[0].LastCheck] = true
		if len(lastChecks) < 5 {
			return fmt.Errorf("%d health-check rounds seen", len(lastChecks))
		}
		return nil
	}, true)
	for _, n := range nodes {
		if got := defaultReads(t, n); got != asks {
			t.Errorf("%s counted %d client reads of default; the gateway's /nodes asked %d times and the health checks must count none", n.name, got, asks)
		}
	}
}
