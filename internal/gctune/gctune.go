// Package gctune bounds how far a long-running process's heap may grow
// past its live data between two collections.
//
// Go's default (GOGC=100) lets the heap reach twice its live size before
// it collects, and the process keeps that memory. That suits a program
// whose live heap is small; a node holding millions of keys would keep
// hundreds of megabytes it does not use. Tuner keeps the headroom at the
// larger of Floor and Min percent of the live heap, never above Go's
// default: a small heap collects as it always did, a large one at most
// Min percent past its live size. The collector's CPU cost per allocated
// byte grows as the headroom shrinks, which is why it never goes below
// Min percent.
package gctune

import (
	"context"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

const (
	// Floor is the headroom a small heap always has.
	Floor = 32 << 20
	// Min is the lowest GC percent the tuner sets.
	Min = 25
	// Max is the highest: Go's default.
	Max = 100
)

// Percent returns the GC percent for a live heap of live bytes: the
// headroom max(Floor, live × Min / 100), as a percentage of live, at most
// Max.
func Percent(live uint64) int {
	if live <= Floor*100/Max {
		return Max
	}
	p := int(Floor * 100 / live)
	return max(Min, min(Max, p))
}

// Window is how many Steps of history the tuner keeps: it lowers the GC
// percent only while the live heap has grown by less than a tenth over
// that many steps (30 s with Run's usual interval).
const Window = 30

// Tuner adjusts the collector to the live heap.
//
// While the live heap grows fast (a bulk load, a node catching up on a
// large keyspace) a low percent would make the collector mark the whole,
// growing heap every few megabytes allocated; Go's own doubling marks it
// a few times in all. So the tuner holds Max while the live heap grows by
// a tenth or more within Window steps, and sets Percent once it settles:
// a long load costs at most one extra collection per Window, and the
// memory the growth touched beyond the new goal is returned by the
// runtime's scavenger.
type Tuner struct {
	// Live returns the live heap in bytes. Default: the runtime's own
	// count of what the last collection marked.
	Live func() uint64
	// Set sets the GC percent and returns the previous one. Default:
	// debug.SetGCPercent.
	Set  func(int) int
	last int
	seen []uint64 // the live heap at the last Window steps, oldest first
}

// Step sets the GC percent for the current live heap, if it changed, and
// returns it.
func (t *Tuner) Step() int {
	live := t.Live
	if live == nil {
		live = liveHeap
	}
	set := t.Set
	if set == nil {
		set = debug.SetGCPercent
	}
	l := live()
	if len(t.seen) == Window {
		t.seen = append(t.seen[:0], t.seen[1:]...)
	}
	t.seen = append(t.seen, l)
	p := Percent(l)
	if oldest := t.seen[0]; l > oldest+oldest/10 || len(t.seen) < Window && p < Max {
		p = Max // growing, or not watched long enough to tell
	}
	if p != t.last {
		set(p)
		t.last = p
	}
	return p
}

// Run calls Step every interval until ctx ends. It does nothing if the
// GOGC environment variable is set: whoever set it chose.
func Run(ctx context.Context, every time.Duration) {
	if _, ok := os.LookupEnv("GOGC"); ok {
		return
	}
	var t Tuner
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		t.Step()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0 // not supported by this runtime: behave as Go's default
	}
	return s[0].Value.Uint64()
}
