package gctune

import (
	"context"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, Max},
		{1 << 20, Max},
		{Floor, Max},        // headroom Floor = 100 %
		{2 * Floor, 50},     // headroom Floor = 50 %
		{4 * Floor, Min},    // headroom Floor = 25 %
		{40 * Floor, Min},   // never below Min
		{3 * Floor, 33},     // rounded down
		{Floor + 1<<20, 96}, // just past the floor
		{1 << 40, Min},
	} {
		if got := Percent(c.live); got != c.want {
			t.Errorf("Percent(%d) = %d, want %d", c.live, got, c.want)
		}
	}
}

// TestPercentHeadroom: for every live size the headroom allowed is
// max(Floor, Min % of live), at most the live size (Go's default), give or
// take the 1 % that an integer percentage rounds away.
func TestPercentHeadroom(t *testing.T) {
	for live := uint64(1 << 20); live < 1<<36; live += live / 7 {
		p := Percent(live)
		if p < Min || p > Max {
			t.Fatalf("live %d: %d%% outside [%d, %d]", live, p, Min, Max)
		}
		head := live * uint64(p) / 100
		want := min(live, max(Floor, live*Min/100))
		if head > want || want-head > live/100 {
			t.Fatalf("live %d: %d%% allows %d bytes of headroom, want %d", live, p, head, want)
		}
	}
}

func TestStepSetsOnlyOnChange(t *testing.T) {
	live := uint64(0)
	var sets []int
	tu := Tuner{Live: func() uint64 { return live }, Set: func(p int) int { sets = append(sets, p); return 0 }}
	step := func(l uint64, n int) {
		live = l
		for range n {
			tu.Step()
		}
	}
	step(1<<20, 3)           // small: Max, set once
	step(2*Floor, Window)    // settles at 2×Floor: 50 once watched for a Window
	step(8*Floor, 1)         // grows fast: Max
	step(8*Floor, Window)    // settles: Min
	step(8*Floor+Floor/2, 5) // grows by 6%: stays at Min
	want := []int{Max, 50, Max, Min}
	if len(sets) != len(want) {
		t.Fatalf("set %v, want %v", sets, want)
	}
	for i := range want {
		if sets[i] != want[i] {
			t.Fatalf("set %v, want %v", sets, want)
		}
	}
}

// TestStepHoldsMaxWhileTheHeapGrows: a heap that grew by a tenth or more
// within the last Window steps keeps Go's default, however large it is;
// once the window holds no such growth the percent drops.
func TestStepHoldsMaxWhileTheHeapGrows(t *testing.T) {
	live := uint64(64 * Floor)
	tu := Tuner{Live: func() uint64 { return live }, Set: func(int) int { return 0 }}
	for i := range 200 {
		live += live / 100 // 1% a step: 10% within a dozen steps
		if p := tu.Step(); p != Max {
			t.Fatalf("step %d, live %d growing: %d%%, want %d", i, live, p, Max)
		}
	}
	// Growth stops: the last 10% took 10 steps, so for about 9 more the
	// window still holds a sample a tenth lower.
	for i := range 9 {
		if p := tu.Step(); p != Max {
			t.Fatalf("step %d after growth stopped: %d%%, want %d while the window shows growth", i, p, Max)
		}
	}
	for range Window {
		tu.Step()
	}
	if p := tu.Step(); p != Min {
		t.Fatalf("after a steady Window: %d%%, want %d", p, Min)
	}
}

// TestLiveHeapReadsTheRuntime: the default source of the live heap is the
// runtime's, and it sees a large allocation that is kept alive.
func TestLiveHeapReadsTheRuntime(t *testing.T) {
	keep := make([]byte, 64<<20)
	for i := range keep {
		keep[i] = byte(i)
	}
	runtime.GC()
	if got := liveHeap(); got < 64<<20 {
		t.Fatalf("live heap %d bytes with 64 MiB kept alive", got)
	}
	runtime.KeepAlive(keep)
}

// TestRunLeavesAChosenGOGCAlone: with GOGC set, Run returns at once and
// changes nothing, even while its context lives.
func TestRunLeavesAChosenGOGCAlone(t *testing.T) {
	t.Setenv("GOGC", "100")
	before := debug.SetGCPercent(77)
	defer debug.SetGCPercent(before)
	done := make(chan struct{})
	go func() { Run(context.Background(), time.Millisecond); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return with GOGC set")
	}
	if got := debug.SetGCPercent(77); got != 77 {
		t.Fatalf("GC percent changed to %d with GOGC set", got)
	}
}
