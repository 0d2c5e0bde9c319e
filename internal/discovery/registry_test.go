package discovery

import (
	"errors"
	"testing"
	"time"
)

func TestRegistryRestoreNeverOutlivesOneTTL(t *testing.T) {
	r := NewRegistry(RegistryConfig{TTL: testTTL})
	now := t0
	future, recent, old := testEntry(1), testEntry(2), testEntry(3)
	future.LastSeen = now.Add(24 * time.Hour) // written by a clock a day ahead
	recent.LastSeen = now.Add(-time.Second)
	old.LastSeen = now.Add(-testTTL - time.Second)
	if n := r.Restore([]Entry{future, recent, old}, now); n != 2 {
		t.Fatalf("restored %d, want 2", n)
	}
	if got := r.Peers(now.Add(testTTL - time.Second)); len(got) != 2 {
		t.Fatalf("%d live just before recent's TTL, want 2", len(got))
	}
	if got := r.Peers(now.Add(testTTL - time.Second + time.Millisecond)); len(got) != 1 || got[0].ID != future.ID {
		t.Fatalf("live = %+v, want only the future-dated entry", got)
	}
	if got := r.Peers(now.Add(testTTL + time.Millisecond)); len(got) != 0 {
		t.Fatalf("a future-dated entry outlived one TTL: %+v", got)
	}
}

func TestRegistryBounds(t *testing.T) {
	r := NewRegistry(RegistryConfig{TTL: testTTL, MaxEntries: 3, MaxPerSource: 2})
	for i, src := range []string{"a", "a", "b"} {
		if _, err := r.Upsert(testEntry(i), src, true, t0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Upsert(testEntry(3), "a", true, t0); !errors.Is(err, ErrFull) {
		t.Fatalf("over the total: %v", err)
	}
	r2 := NewRegistry(RegistryConfig{TTL: testTTL, MaxPerSource: 2})
	r2.Upsert(testEntry(0), "a", true, t0)
	r2.Upsert(testEntry(1), "a", true, t0)
	if _, err := r2.Upsert(testEntry(2), "a", true, t0); !errors.Is(err, ErrSourceFull) {
		t.Fatalf("over the source bound: %v", err)
	}
	// Expiry gives the source its room back.
	r2.Expire(t0.Add(testTTL + time.Millisecond))
	if _, err := r2.Upsert(testEntry(2), "a", true, t0.Add(testTTL+time.Millisecond)); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
}

func TestRestoredEntryIsTakenOverByItsFirstHeartbeat(t *testing.T) {
	r := NewRegistry(RegistryConfig{TTL: testTTL, Sticky: true})
	e := testEntry(1)
	e.LastSeen = t0
	r.Restore([]Entry{e}, t0)
	if _, err := r.Upsert(testEntry(1), "10.0.0.1", false, t0.Add(time.Second)); err != nil {
		t.Fatalf("first heartbeat after a restart: %v", err)
	}
	if _, err := r.Upsert(testEntry(1), "10.6.6.6", false, t0.Add(2*time.Second)); !errors.Is(err, ErrOwned) {
		t.Fatalf("heartbeat from another source: %v, want ErrOwned", err)
	}
}
