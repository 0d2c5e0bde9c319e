package clock

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var start = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// waitTimeout bounds every wait for a goroutine; it is a failure deadline,
// not a delay: the waits return as soon as the event happens.
const waitTimeout = 5 * time.Second

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// noTick reports a tick if one is ready. Fake tickers deliver during
// Advance, so after Advance returns a non-blocking check is exact.
func noTick(t *testing.T, tk Ticker) {
	t.Helper()
	select {
	case v := <-tk.C():
		t.Fatalf("unexpected tick at %v", v)
	default:
	}
}

func TestFakeNowAdvance(t *testing.T) {
	c := NewFake(start)
	if got := c.Now(); !got.Equal(start) {
		t.Fatalf("Now() = %v, want %v", got, start)
	}
	want := start
	for _, d := range []time.Duration{0, time.Nanosecond, time.Second, 90 * time.Minute, 0, 3 * 24 * time.Hour} {
		c.Advance(d)
		want = want.Add(d)
		if got := c.Now(); !got.Equal(want) {
			t.Fatalf("after Advance(%v) Now() = %v, want %v", d, got, want)
		}
	}
}

func TestFakeAdvanceWithWaitersEndsAtTarget(t *testing.T) {
	c := NewFake(start)
	tk := c.NewTicker(3 * time.Second)
	defer tk.Stop()
	c.AfterFunc(time.Second, func() {})
	c.Advance(10 * time.Second) // passes the timer and three ticks
	if got, want := c.Now(), start.Add(10*time.Second); !got.Equal(want) {
		t.Fatalf("Now() = %v, want %v", got, want)
	}
}

func TestFakeTicker(t *testing.T) {
	const p = 10 * time.Second
	tests := []struct {
		name  string
		steps []time.Duration // advance by each, then read at most one tick
		ticks []time.Duration // tick read after each step (0: none), as offsets from start
	}{
		{
			name:  "one tick per period",
			steps: []time.Duration{p, p, p},
			ticks: []time.Duration{p, 2 * p, 3 * p},
		},
		{
			name:  "nothing before the period",
			steps: []time.Duration{p - 1, 1, p - 1, 1},
			ticks: []time.Duration{0, p, 0, 2 * p},
		},
		{
			name:  "several periods at once leave one pending tick",
			steps: []time.Duration{3 * p, 0, p},
			ticks: []time.Duration{p, 0, 4 * p},
		},
		{
			name:  "ticks keep the original phase",
			steps: []time.Duration{25 * time.Second, 5 * time.Second, 9 * time.Second, time.Second},
			ticks: []time.Duration{p, 3 * p, 0, 4 * p},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := NewFake(start)
			tk := c.NewTicker(p)
			defer tk.Stop()
			for i, d := range tc.steps {
				c.Advance(d)
				want := tc.ticks[i]
				if want == 0 {
					noTick(t, tk)
					continue
				}
				select {
				case got := <-tk.C():
					if !got.Equal(start.Add(want)) {
						t.Fatalf("step %d: tick at %v, want %v", i, got.Sub(start), want)
					}
				default:
					t.Fatalf("step %d: no tick, want one at %v", i, want)
				}
				noTick(t, tk) // at most one tick is ever buffered
			}
		})
	}
}

func TestFakeTickerStop(t *testing.T) {
	c := NewFake(start)
	tk := c.NewTicker(time.Second)
	c.Advance(time.Second)
	recv(t, tk.C(), "first tick")
	tk.Stop()
	c.Advance(time.Minute)
	noTick(t, tk)
	if n := c.Waiters(); n != 0 {
		t.Fatalf("Waiters() after Stop = %d, want 0", n)
	}
	tk.Stop() // idempotent
}

func TestFakeTickerNonPositivePanics(t *testing.T) {
	for _, d := range []time.Duration{0, -time.Second} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewTicker(%v) did not panic", d)
				}
			}()
			NewFake(start).NewTicker(d)
		}()
	}
}

func TestFakeAfterFunc(t *testing.T) {
	c := NewFake(start)
	fired := make(chan time.Time, 1)
	c.AfterFunc(5*time.Second, func() { fired <- c.Now() })

	c.Advance(4 * time.Second)
	// A due timer is handed to its goroutine inside Advance, so a pending
	// waiter means f has not been started.
	if n := c.Waiters(); n != 1 {
		t.Fatalf("Waiters() before due = %d, want 1", n)
	}
	select {
	case <-fired:
		t.Fatal("fired before its time")
	default:
	}

	c.Advance(time.Second)
	at := recv(t, fired, "timer")
	if at.Before(start.Add(5 * time.Second)) {
		t.Fatalf("f saw Now() = %v, before its due time", at.Sub(start))
	}
	if n := c.Waiters(); n != 0 {
		t.Fatalf("Waiters() after firing = %d, want 0", n)
	}

	c.Advance(time.Hour)
	select {
	case <-fired:
		t.Fatal("timer fired twice")
	default:
	}
}

func TestFakeAfterFuncOrder(t *testing.T) {
	c := NewFake(start)
	order := make(chan string, 4)
	// Created out of due-time order.
	for _, tm := range []struct {
		name string
		d    time.Duration
	}{{"c", 3 * time.Second}, {"a", time.Second}, {"b", 2 * time.Second}, {"d", 4 * time.Second}} {
		c.AfterFunc(tm.d, func() { order <- tm.name })
	}
	// Each f runs in its own goroutine, so step one second at a time and
	// wait for that step's timer before the next.
	for i, want := range []string{"a", "b", "c", "d"} {
		c.Advance(time.Second)
		if got := recv(t, order, "timer "+want); got != want {
			t.Fatalf("step %d: timer %q fired, want %q", i+1, got, want)
		}
		if got, want := c.Waiters(), 3-i; got != want {
			t.Fatalf("step %d: Waiters() = %d, want %d", i+1, got, want)
		}
	}
}

func TestFakeAfterFuncAndTickerInterleave(t *testing.T) {
	c := NewFake(start)
	tk := c.NewTicker(2 * time.Second)
	defer tk.Stop()
	fired := make(chan struct{})
	c.AfterFunc(3*time.Second, func() { close(fired) })
	c.Advance(2 * time.Second)
	if got := recv(t, tk.C(), "tick"); !got.Equal(start.Add(2 * time.Second)) {
		t.Fatalf("tick at %v, want 2s", got.Sub(start))
	}
	c.Advance(time.Second)
	recv(t, fired, "timer")
	noTick(t, tk)
	c.Advance(time.Second)
	if got := recv(t, tk.C(), "tick"); !got.Equal(start.Add(4 * time.Second)) {
		t.Fatalf("tick at %v, want 4s", got.Sub(start))
	}
}

func TestFakeTimerStop(t *testing.T) {
	t.Run("before firing", func(t *testing.T) {
		c := NewFake(start)
		var ran atomic.Bool
		tm := c.AfterFunc(time.Second, func() { ran.Store(true) })
		if !tm.Stop() {
			t.Fatal("Stop() before firing = false, want true")
		}
		if tm.Stop() {
			t.Fatal("second Stop() = true, want false")
		}
		if n := c.Waiters(); n != 0 {
			t.Fatalf("Waiters() = %d, want 0", n)
		}
		// A later timer that does fire: the stopped one, due earlier,
		// would have been started before it.
		sentinel := make(chan struct{})
		c.AfterFunc(2*time.Second, func() { close(sentinel) })
		c.Advance(time.Minute)
		recv(t, sentinel, "sentinel timer")
		if ran.Load() {
			t.Fatal("stopped timer ran")
		}
	})
	t.Run("after firing", func(t *testing.T) {
		c := NewFake(start)
		fired := make(chan struct{})
		tm := c.AfterFunc(time.Second, func() { close(fired) })
		c.Advance(time.Second)
		recv(t, fired, "timer")
		if tm.Stop() {
			t.Fatal("Stop() after firing = true, want false")
		}
	})
}

func TestFakeWaiters(t *testing.T) {
	c := NewFake(start)
	var tm1, tm2 Timer
	var tk Ticker
	steps := []struct {
		name string
		do   func()
		want int
	}{
		{"new clock", func() {}, 0},
		{"timer at 1s", func() { tm1 = c.AfterFunc(time.Second, func() {}) }, 1},
		{"ticker every 1s", func() { tk = c.NewTicker(time.Second) }, 2},
		{"timer at 5s", func() { tm2 = c.AfterFunc(5*time.Second, func() {}) }, 3},
		{"advance past first timer; ticker stays", func() { c.Advance(2 * time.Second) }, 2},
		{"stop ticker", func() { tk.Stop() }, 1},
		{"stop fired timer", func() { tm1.Stop() }, 1},
		{"stop pending timer", func() { tm2.Stop() }, 0},
	}
	for _, s := range steps {
		s.do()
		if got := c.Waiters(); got != s.want {
			t.Fatalf("%s: Waiters() = %d, want %d", s.name, got, s.want)
		}
	}
}

func TestRealClock(t *testing.T) {
	var c Clock = Real{}
	before := time.Now()
	now := c.Now()
	if now.Before(before) || now.Sub(before) > time.Minute {
		t.Fatalf("Real.Now() = %v, wall clock %v", now, before)
	}

	tk := c.NewTicker(time.Millisecond)
	recv(t, tk.C(), "first real tick")
	recv(t, tk.C(), "second real tick")
	tk.Stop()

	fired := make(chan struct{})
	c.AfterFunc(time.Millisecond, func() { close(fired) })
	recv(t, fired, "real AfterFunc")

	var ran atomic.Bool
	tm := c.AfterFunc(time.Hour, func() { ran.Store(true) })
	if !tm.Stop() {
		t.Fatal("Stop() of a pending real timer = false, want true")
	}
	if ran.Load() {
		t.Fatal("stopped real timer ran")
	}
}

func TestOffsetShiftsWallClockOnly(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := NewFake(start)
	for _, d := range []time.Duration{-48 * time.Hour, 0, time.Hour, 48 * time.Hour} {
		o := Offset{Clock: f, D: d}
		a := o.Now()
		if !a.Equal(f.Now().Add(d)) {
			t.Fatalf("offset %v: Now = %v, want %v", d, a, f.Now().Add(d))
		}
		f.Advance(3 * time.Second)
		if got := o.Now().Sub(a); got != 3*time.Second {
			t.Fatalf("offset %v: elapsed %v, want 3s", d, got)
		}
	}
	// On the real clock the monotonic reading survives the shift, so an
	// elapsed time is still measured monotonically.
	r := Offset{Clock: Real{}, D: -time.Hour}
	a := r.Now()
	if s := a.String(); !strings.Contains(s, "m=") {
		t.Fatalf("shifted real time lost its monotonic reading: %s", s)
	}
	if e := r.Now().Sub(a); e < 0 || e > time.Minute {
		t.Fatalf("elapsed %v across an offset clock", e)
	}
	if d := time.Since(a); d < 59*time.Minute || d > 61*time.Minute {
		// time.Since uses the monotonic clock of both: an hour behind.
		t.Fatalf("time.Since(shifted) = %v, want about 1h", d)
	}
}
