// Package clock provides the time source used by every dcounter component.
//
// Production code uses Real; tests use Fake and move time forward with
// Advance, so no test has to sleep to wait for a timer.
package clock

import (
	"sort"
	"sync"
	"time"
)

// Clock is the part of package time that dcounter components use.
type Clock interface {
	Now() time.Time
	// NewTicker returns a ticker that fires every d. d must be positive.
	NewTicker(d time.Duration) Ticker
	// AfterFunc calls f in its own goroutine after d has elapsed.
	AfterFunc(d time.Duration, f func()) Timer
}

// Ticker delivers ticks on C until stopped.
type Ticker interface {
	C() <-chan time.Time
	Stop()
}

// Timer is a one-shot timer created by AfterFunc.
type Timer interface {
	// Stop prevents the timer from firing; it reports whether it did.
	Stop() bool
}

// Real is the wall clock.
type Real struct{}

var _ Clock = Real{}

func (Real) Now() time.Time { return time.Now() }

func (Real) NewTicker(d time.Duration) Ticker { return realTicker{time.NewTicker(d)} }

func (Real) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

type realTicker struct{ t *time.Ticker }

func (r realTicker) C() <-chan time.Time { return r.t.C }
func (r realTicker) Stop()               { r.t.Stop() }

// Fake is a manually advanced clock. The zero value is not usable; call NewFake.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	waiters []*fakeWaiter
}

var _ Clock = (*Fake)(nil)

type fakeWaiter struct {
	at     time.Time
	period time.Duration // > 0 for tickers
	ch     chan time.Time
	f      func()
	done   bool
}

// NewFake returns a fake clock set to start.
func NewFake(start time.Time) *Fake { return &Fake{now: start} }

// Now returns the fake current time.
func (c *Fake) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTicker returns a ticker driven by Advance. Like time.Ticker, it drops
// ticks that the receiver is too slow to take.
func (c *Fake) NewTicker(d time.Duration) Ticker {
	if d <= 0 {
		panic("clock: non-positive ticker interval")
	}
	w := &fakeWaiter{period: d, ch: make(chan time.Time, 1)}
	c.mu.Lock()
	w.at = c.now.Add(d)
	c.waiters = append(c.waiters, w)
	c.mu.Unlock()
	return &fakeTicker{c: c, w: w}
}

// AfterFunc schedules f to run (in its own goroutine) once Advance passes d.
func (c *Fake) AfterFunc(d time.Duration, f func()) Timer {
	w := &fakeWaiter{f: f}
	c.mu.Lock()
	w.at = c.now.Add(d)
	c.waiters = append(c.waiters, w)
	c.mu.Unlock()
	return &fakeTimer{c: c, w: w}
}

// Advance moves the clock forward by d, firing every timer and ticker that
// comes due, in time order.
func (c *Fake) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	for {
		live := c.waiters[:0]
		for _, w := range c.waiters {
			if !w.done {
				live = append(live, w)
			}
		}
		c.waiters = live
		sort.SliceStable(c.waiters, func(i, j int) bool { return c.waiters[i].at.Before(c.waiters[j].at) })
		if len(c.waiters) == 0 || c.waiters[0].at.After(end) {
			break
		}
		w := c.waiters[0]
		c.now = w.at
		if w.period > 0 {
			w.at = w.at.Add(w.period)
			select {
			case w.ch <- c.now:
			default:
			}
		} else {
			w.done = true
			go w.f()
		}
	}
	c.now = end
	c.mu.Unlock()
}

// Waiters reports how many timers and tickers are pending; tests use it to
// wait until a component has armed its timers before advancing.
func (c *Fake) Waiters() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, w := range c.waiters {
		if !w.done {
			n++
		}
	}
	return n
}

type fakeTicker struct {
	c *Fake
	w *fakeWaiter
}

func (t *fakeTicker) C() <-chan time.Time { return t.w.ch }
func (t *fakeTicker) Stop() {
	t.c.mu.Lock()
	t.w.done = true
	t.c.mu.Unlock()
}

type fakeTimer struct {
	c *Fake
	w *fakeWaiter
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.w.done
	t.w.done = true
	return was
}

// Offset is Clock with its wall-clock readings shifted by D: it behaves like
// a machine whose system clock is wrong by D. Durations measured between two
// Now readings, tickers and timers are unaffected (Go's monotonic reading
// shifts with the wall reading, so differences stay exact), just as a wrong
// system clock does not slow a process down. Only values derived from the
// wall clock (Unix times, dates) move. It exists to reproduce and test clock
// skew with real processes; libfaketime cannot reach a static Go binary.
type Offset struct {
	Clock
	D time.Duration
}

var _ Clock = Offset{}

// Now returns the underlying clock's time plus D.
func (o Offset) Now() time.Time { return o.Clock.Now().Add(o.D) }
