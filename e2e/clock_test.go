package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// setClockOffset replaces (or adds) --clock-offset in p's arguments.
func (p *proc) setClockOffset(d string) {
	for i, a := range p.args {
		if a == "--clock-offset" && i+1 < len(p.args) {
			p.args[i+1] = d
			return
		}
	}
	p.args = append(p.args, "--clock-offset", d)
}

// TestClockStepRetryIsReplayed: a keyed write on a node whose clock is
// wrong; the clock is corrected (or stepped), the node is killed with
// SIGKILL and restarted, and the same key is retried at once: the retry is
// a replay, not a second write.
func TestClockStepRetryIsReplayed(t *testing.T) {
	for _, tc := range []struct{ name, before, after string }{
		{"clock 1h behind, corrected", "-1h", "0s"},
		{"clock stepped a day forward", "0s", "24h"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startNode(t, "n1", "", "--clock-offset", tc.before)
			if status, v, replayed := keyedAdd(t, p.HTTP, "c", "retry-me", 7); status != 200 || v != 7 || replayed {
				t.Fatalf("first write: status %d, value %d, replayed %v", status, v, replayed)
			}
			p.kill()
			p.setClockOffset(tc.after)
			p.start()
			status, v, replayed := keyedAdd(t, p.HTTP, "c", "retry-me", 7)
			if status != 200 || v != 7 || !replayed {
				t.Fatalf("retry after the clock step and a restart: status %d, value %d, Idempotent-Replayed %v; want 200, 7, true", status, v, replayed)
			}
			if got, err := p.value("c"); err != nil || got != 7 {
				t.Fatalf("counter %d (%v), want 7", got, err)
			}
		})
	}
}

// allAliveEverywhere checks that every node lists every node, alive.
func allAliveEverywhere(nodes []*proc) error {
	for _, o := range nodes {
		for _, n := range nodes {
			st, err := statusOf(o, n.name)
			if err != nil {
				return err
			}
			if st != "alive" {
				return fmt.Errorf("%s sees %s as %q", o.name, n.name, st)
			}
		}
	}
	return nil
}

// memberOffset reads observer's estimate of member's clock offset, in
// seconds, from its metrics.
func memberOffset(observer *proc, member string) (float64, error) {
	b, err := observer.get("/metrics")
	if err != nil {
		return 0, err
	}
	prefix := fmt.Sprintf("dcounter_member_clock_offset_seconds{member=%q} ", member)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("%s reports no clock offset for %s", observer.name, member)
}

// TestSkewedClocksStayMembers: in a cluster where one node's clock is two
// days ahead and another's two days behind, every node lists every other
// alive; the skew shows in the metrics and the log; and after both are
// restarted with correct clocks (one killed, one stopped cleanly) they are
// still listed alive everywhere.
func TestSkewedClocksStayMembers(t *testing.T) {
	n1 := startNode(t, "n1", "")
	ahead := startNode(t, "ahead", n1.Gossip, "--clock-offset", "48h")
	behind := startNode(t, "behind", n1.Gossip, "--clock-offset", "-48h")
	nodes := []*proc{n1, ahead, behind}
	start := time.Now()
	waitFor(t, 10*time.Second, func() error { return allAliveEverywhere(nodes) }, true)
	t.Logf("all three alive everywhere %v after the last start", time.Since(start).Round(time.Millisecond))
	// And they stay so: failure detection does not read clocks.
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); {
		if err := allAliveEverywhere(nodes); err != nil {
			t.Fatalf("after all were alive: %v", err)
		}
		time.Sleep(100 * time.Millisecond) // sampling an invariant, not waiting for a condition
	}

	// The skew is measured (give or take the one-way delay) and logged.
	for _, tc := range []struct {
		observer *proc
		member   string
		want     float64
	}{
		{n1, "ahead", 48 * 3600}, {n1, "behind", -48 * 3600}, {ahead, "behind", -96 * 3600}, {behind, "n1", 48 * 3600},
	} {
		waitFor(t, 5*time.Second, func() error {
			got, err := memberOffset(tc.observer, tc.member)
			if err != nil {
				return err
			}
			if got > tc.want+0.001 || got < tc.want-1 {
				return fmt.Errorf("%s estimates %s's clock offset at %vs, want about %vs", tc.observer.name, tc.member, got, tc.want)
			}
			t.Logf("%s estimates %s's clock offset at %.3fs (true: %.0fs)", tc.observer.name, tc.member, got, tc.want)
			return nil
		}, true)
	}
	waitFor(t, 5*time.Second, func() error {
		for _, name := range []string{"ahead", "behind"} {
			if !strings.Contains(n1.log.String(), "member's clock differs from ours") || !strings.Contains(n1.log.String(), "member="+name) {
				return fmt.Errorf("n1's log does not report %s's clock", name)
			}
		}
		return nil
	}, true)

	// Correct both clocks with a restart: still members, everywhere.
	ahead.kill()
	ahead.setClockOffset("0s")
	ahead.start()
	behind.stop(t)
	behind.setClockOffset("0s")
	behind.start()
	start = time.Now()
	waitFor(t, 10*time.Second, func() error { return allAliveEverywhere(nodes) }, true)
	t.Logf("all three alive everywhere %v after the corrected restarts", time.Since(start).Round(time.Millisecond))
	waitFor(t, 5*time.Second, func() error {
		for _, name := range []string{"ahead", "behind"} {
			got, err := memberOffset(n1, name)
			if err != nil {
				return err
			}
			if got > 0.001 || got < -1 {
				return fmt.Errorf("n1 estimates %s's corrected clock offset at %vs", name, got)
			}
		}
		return nil
	}, true)
}
