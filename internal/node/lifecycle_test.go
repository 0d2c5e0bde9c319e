package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/api"
	"github.com/dcounter/dcounter/internal/service"
)

// waitMembers waits until every node knows all the others.
func (c *memCluster) waitMembers() {
	c.t.Helper()
	c.runUntil(10*time.Second, func() error {
		for _, nd := range c.nodes {
			if got := nd.memberCount(); got != len(c.nodes) {
				return fmt.Errorf("%s knows %d members", nd.cfg.Name, got)
			}
		}
		return nil
	})
}

// status polls until every node reports key as want (TTL ignored).
func (c *memCluster) status(key string, value int64, live bool) func() error {
	return func() error {
		for _, nd := range c.nodes {
			got, err := nd.Get(context.Background(), key)
			if err != nil {
				return err
			}
			if got.Value != value || got.Live != live {
				return fmt.Errorf("%s: %s = %d (live %v), want %d (live %v)", nd.cfg.Name, key, got.Value, got.Live, value, live)
			}
		}
		return nil
	}
}

func add(t *testing.T, nd *Node, key string, delta int64, w service.WriteOptions) service.Counter {
	t.Helper()
	c, _, err := nd.Add(context.Background(), key, delta, w)
	if err != nil {
		t.Fatalf("%s: add %s %d: %v", nd.cfg.Name, key, delta, err)
	}
	return c
}

// TestDeleteResetsEveryReplica: a delete on one node resets the key on all,
// removes it from listings, and later writes anywhere count from 0.
func TestDeleteResetsEveryReplica(t *testing.T) {
	c := newMemCluster(t, 3)
	ctx := context.Background()
	for i, nd := range c.nodes {
		add(t, nd, "likes", int64(10*(i+1)), service.WriteOptions{})
	}
	c.runUntil(5*time.Second, c.status("likes", 60, true))
	existed, replayed, err := c.nodes[0].Delete(ctx, "likes", "del-1")
	if err != nil || !existed || replayed {
		t.Fatalf("delete: existed %v replayed %v err %v", existed, replayed, err)
	}
	if existed, replayed, _ := c.nodes[0].Delete(ctx, "likes", "del-1"); !existed || !replayed {
		t.Fatalf("retried delete: existed %v replayed %v, want the first answer replayed", existed, replayed)
	}
	c.runUntil(5*time.Second, c.status("likes", 0, false))
	for _, nd := range c.nodes {
		if page, _ := nd.List(ctx, service.ListRequest{}); len(page.Items) != 0 {
			t.Fatalf("%s lists %+v after the delete", nd.cfg.Name, page.Items)
		}
	}
	if got := add(t, c.nodes[2], "likes", 1, service.WriteOptions{}); got.Value != 1 {
		t.Fatalf("first write after the delete answered %d, want 1", got.Value)
	}
	c.runUntil(5*time.Second, c.status("likes", 1, true))
}

// TestWriteConcurrentWithDeleteConverges: writes cut off from a delete
// are dropped everywhere once it arrives (reset wins by generation), and
// every replica agrees.
func TestWriteConcurrentWithDeleteConverges(t *testing.T) {
	c := newMemCluster(t, 3)
	ctx := context.Background()
	add(t, c.nodes[0], "k", 5, service.WriteOptions{})
	c.runUntil(5*time.Second, c.status("k", 5, true))
	c.net.Partition([]string{c.addrs[0]}, []string{c.addrs[1], c.addrs[2]})
	if _, _, err := c.nodes[0].Delete(ctx, "k", ""); err != nil {
		t.Fatal(err)
	}
	add(t, c.nodes[1], "k", 7, service.WriteOptions{}) // generation 0, unaware of the delete
	c.advance(time.Second)
	c.net.Heal()
	c.runUntil(10*time.Second, c.status("k", 0, false))
}

// TestExpiryAndWriteWithTTL: a write with a TTL sets the deadline once
// (if_none), every node expires the key when its clock passes it, and the
// next write opens a new window from 0; reclaim then frees the old one.
func TestExpiryAndWriteWithTTL(t *testing.T) {
	c := newMemCluster(t, 3)
	w := service.WriteOptions{TTL: 2 * time.Second}
	if got := add(t, c.nodes[0], "rl", 1, w); got.TTL != 2*time.Second {
		t.Fatalf("first hit: ttl %v, want 2s", got.TTL)
	}
	c.advance(500 * time.Millisecond)
	got := add(t, c.nodes[1], "rl", 1, w)
	if got.Value != 2 || got.TTL <= 0 || got.TTL > 1500*time.Millisecond {
		t.Fatalf("second hit: %+v; want value 2 and the first hit's deadline (if_none)", got)
	}
	c.runUntil(5*time.Second, c.status("rl", 2, true))
	c.advance(1600 * time.Millisecond)
	c.runUntil(time.Second, c.status("rl", 0, false))
	if got := add(t, c.nodes[2], "rl", 1, service.WriteOptions{}); got.Value != 1 || got.TTL != 0 {
		t.Fatalf("write after expiry: %+v, want 1 without a TTL", got)
	}
	c.runUntil(5*time.Second, c.status("rl", 1, true))
}

// TestReclaimForgetsExpiredKeys: past grace and horizon, an expired key
// leaves every node's keyspace.
func TestReclaimForgetsExpiredKeys(t *testing.T) {
	c := startMemClusterWith(t, make([]time.Duration, 3), func(cfg *Config) {
		cfg.MaxClockSkew = 100 * time.Millisecond
		cfg.ReclaimHorizon = 3 * time.Second
		cfg.ReclaimInterval = 100 * time.Millisecond
	})
	c.waitMembers()
	for i := 0; i < 50; i++ {
		add(t, c.nodes[i%3], fmt.Sprintf("churn:%d", i), 1, service.WriteOptions{TTL: time.Second})
	}
	c.runUntil(5*time.Second, func() error {
		for _, nd := range c.nodes {
			if n := nd.keyCount(); n != 50 {
				return fmt.Errorf("%s holds %d keys", nd.cfg.Name, n)
			}
		}
		return nil
	})
	c.runUntil(10*time.Second, func() error {
		for _, nd := range c.nodes {
			if n := nd.keyCount(); n != 0 {
				return fmt.Errorf("%s still holds %d keys", nd.cfg.Name, n)
			}
		}
		return nil
	})
	m := scrape(t, c.nodes[0])
	for _, want := range []string{"dcounter_keys_expired_total 50", "dcounter_keys_forgotten_total 50"} {
		if grep(m, want) == "" {
			t.Errorf("metrics lack %q:\n%s", want, grep(m, "dcounter_keys"))
		}
	}
}

// TestSetTTLAndPersist: PUT/DELETE ttl on a live key, 404 on a missing one.
func TestSetTTLAndPersist(t *testing.T) {
	c := newMemCluster(t, 2)
	ctx := context.Background()
	add(t, c.nodes[0], "k", 3, service.WriteOptions{})
	if _, _, err := c.nodes[0].SetTTL(ctx, "missing", time.Minute, ""); !errors.Is(err, api.ErrNotFound) || service.HTTPStatus(err) != http.StatusNotFound {
		t.Fatalf("ttl on a missing key: %v", err)
	}
	got, _, err := c.nodes[0].SetTTL(ctx, "k", time.Second, "")
	if err != nil || got.TTL != time.Second {
		t.Fatalf("set ttl: %+v %v", got, err)
	}
	c.runUntil(5*time.Second, func() error {
		if got, _ := c.nodes[1].Get(ctx, "k"); got.TTL == 0 {
			return errors.New("the TTL has not reached n2")
		}
		return nil
	})
	if got, _, err := c.nodes[1].SetTTL(ctx, "k", 0, ""); err != nil || got.TTL != 0 || got.Value != 3 {
		t.Fatalf("persist: %+v %v", got, err)
	}
	c.advance(2 * time.Second)
	c.runUntil(time.Second, c.status("k", 3, true))
}

// TestDayOffClockRefusesClockDependentWrites: a node whose clock is a day
// ahead of its members' refuses writes that set or depend on an expiry,
// and takes the rest; its members are not affected.
func TestDayOffClockRefusesClockDependentWrites(t *testing.T) {
	c := startMemClusterWith(t, []time.Duration{0, 0, 24 * time.Hour}, func(cfg *Config) { cfg.MaxClockSkew = time.Second })
	c.waitMembers()
	off := c.nodes[2]
	c.runUntil(10*time.Second, func() error {
		off.mu.Lock()
		defer off.mu.Unlock()
		if err := off.clockSuspect(); err == nil {
			return errors.New("the day-ahead node has not measured its members' clocks yet")
		}
		return nil
	})
	ctx := context.Background()
	if _, _, err := off.Add(ctx, "rl", 1, service.WriteOptions{TTL: time.Minute}); service.HTTPStatus(err) != http.StatusServiceUnavailable {
		t.Fatalf("write with a TTL on the day-ahead node: %v, want 503", err)
	}
	add(t, c.nodes[0], "rl", 1, service.WriteOptions{TTL: time.Minute})
	c.runUntil(5*time.Second, func() error {
		off.mu.Lock()
		l, _ := off.ks.LifeOf("rl")
		off.mu.Unlock()
		if l.TTL.Deadline == 0 {
			return errors.New("the deadline has not reached the day-ahead node")
		}
		return nil
	})
	if _, _, err := off.Add(ctx, "rl", 1, service.WriteOptions{}); service.HTTPStatus(err) != http.StatusServiceUnavailable {
		t.Fatalf("write to a key with a deadline on the day-ahead node: %v, want 503", err)
	}
	if _, _, err := off.SetTTL(ctx, "plain", time.Minute, ""); service.HTTPStatus(err) != http.StatusServiceUnavailable {
		t.Fatalf("ttl change on the day-ahead node: %v, want 503", err)
	}
	add(t, off, "plain", 1, service.WriteOptions{})
	if _, _, err := off.SetTTL(ctx, "plain", 0, ""); service.HTTPStatus(err) != http.StatusServiceUnavailable {
		t.Fatalf("removing an expiry on the day-ahead node: %v, want 503", err)
	}
	if _, _, err := off.Delete(ctx, "plain", ""); err != nil {
		t.Fatalf("delete on the day-ahead node: %v", err)
	}
	if got := add(t, c.nodes[1], "rl", 1, service.WriteOptions{TTL: time.Minute}); got.Value != 2 {
		t.Fatalf("a member with a good clock: %+v, want 2 in the same window", got)
	}
}
