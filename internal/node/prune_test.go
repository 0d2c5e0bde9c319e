package node

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/membership"
	"github.com/dcounter/dcounter/internal/service"
)

// A node that writes and leaves at once (its deltas not yet pushed) leaves
// its counts behind; once the member horizon has passed the others forget
// it entirely, and its counts stay in every total and keep converging.
func TestLeftMemberIsPrunedAndItsCountsStay(t *testing.T) {
	const horizon = 10 * time.Second
	c := startMemClusterWith(t, make([]time.Duration, 4), func(cfg *Config) { cfg.MemberHorizon = horizon })
	c.waitMembers()
	gone := c.nodes[3]
	add(t, gone, "k", 5, service.WriteOptions{})
	if err := gone.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.nodes = c.nodes[:3]
	c.runUntil(5*time.Second, c.exact(map[string]int64{"k": 5}))
	c.runUntil(2*time.Second, func() error {
		for _, nd := range c.nodes {
			nd.mu.Lock()
			m, ok := nd.members.Get(gone.ID())
			nd.mu.Unlock()
			if !ok || m.State != membership.Left {
				return fmt.Errorf("%s sees the node that left as %v (known %v)", nd.cfg.Name, m.State, ok)
			}
		}
		return nil
	})
	c.advance(horizon)
	c.runUntil(2*time.Second, func() error {
		for _, nd := range c.nodes {
			nd.mu.Lock()
			n, forgotten := nd.members.Len(), nd.members.Forgotten()
			nd.mu.Unlock()
			if n != 3 || forgotten != 1 {
				return fmt.Errorf("%s lists %d members and remembers %d pruned, want 3 and 1", nd.cfg.Name, n, forgotten)
			}
		}
		return nil
	})
	if err := c.allAlive(); err != nil {
		t.Fatal(err)
	}
	if m := scrape(t, c.nodes[0]); !strings.Contains(m, "\ndcounter_members_forgotten 1\n") || !strings.Contains(m, "\n"+`dcounter_members{state="left"} 0`+"\n") {
		t.Fatalf("metrics after pruning:\n%s", grep(m, "dcounter_members"))
	}
	// Keys still carry the pruned replica's entries; writes and repair
	// carry on around them.
	add(t, c.nodes[0], "k", 2, service.WriteOptions{})
	add(t, c.nodes[2], "other", 1, service.WriteOptions{})
	c.runUntil(5*time.Second, c.exact(map[string]int64{"k": 7, "other": 1}))
}
