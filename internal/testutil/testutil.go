// Package testutil holds what the packages' tests share: polling a
// condition with a deadline (tests never sleep to wait), the process's CPU
// time for benchmarks, free ports, a logger that writes to the test's log,
// one that counts what is logged, and a Writes for single-key fakes. Only
// tests and benchmark programs import it.
package testutil

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Poll calls f every millisecond until it returns nil, and returns nil;
// or, once timeout has passed, f's last error. The timeout is a failure
// bound, not a delay: Poll returns as soon as f succeeds. The one polling
// loop the tests share (tests never sleep to wait for a condition).
func Poll(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(time.Millisecond)
	}
}

// CPUTime is the user and system CPU time this process has used so far,
// for benchmarks that report CPU per operation (cpu-µs/op).
func CPUTime(tb testing.TB) time.Duration {
	d, err := ProcessCPU()
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// ProcessCPU is CPUTime for a program that is not a test (a load
// generator reporting its own share of the machine).
func ProcessCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// WaitFor polls cond until it holds, failing t after 10 s.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	err := Poll(10*time.Second, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	})
	if err != nil {
		t.Fatalf("timed out waiting for %s", what)
	}
}

var errNotYet = errors.New("testutil: condition not met")

// Logger returns a logger that writes records at level and above to t.Log.
func Logger(t testing.TB, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: level}))
}

type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// CountingHandler passes every record on to h and counts in n those whose
// message contains sub: for tests of what is logged, and how often.
func CountingHandler(h slog.Handler, sub string, n *atomic.Int64) slog.Handler {
	return countingHandler{h, sub, n}
}

type countingHandler struct {
	slog.Handler
	sub string
	n   *atomic.Int64
}

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.sub) {
		h.n.Add(1)
	}
	return h.Handler.Handle(ctx, r)
}

func (h countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return countingHandler{h.Handler.WithAttrs(as), h.sub, h.n}
}

func (h countingHandler) WithGroup(g string) slog.Handler {
	return countingHandler{h.Handler.WithGroup(g), h.sub, h.n}
}

// RunWithBinary is a TestMain for tests of a built program: it builds the
// main package pkg (a path relative to the test's directory) into a
// temporary directory, sets *bin to the binary's path, runs m, removes the
// directory and returns m's exit code.
func RunWithBinary(m *testing.M, pkg string, bin *string) int {
	dir, err := os.MkdirTemp("", "dcounter-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	*bin = filepath.Join(dir, "dcounter")
	build := exec.Command("go", "build", "-o", *bin, pkg)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building", pkg+":", err)
		return 1
	}
	return m.Run()
}

// FreePort returns a TCP port that was free on every address a moment
// ago, chosen at random below the kernel's ephemeral range (32768–60999 on
// Linux): a port from that range may be taken by any outgoing connection
// of a test running alongside before the process under test binds it
// ("address already in use"), and one free only on 127.0.0.1 may be held
// on another address by a listener on 0.0.0.0. The same process is never
// handed a port twice.
func FreePort(t testing.TB) int {
	t.Helper()
	return FreeBlock(t, 1)
}

// FreeBlock returns a base port such that base, base+1, ..., base+n-1 were
// all free, as FreePort chooses them: for a program that derives its
// ports from one base.
func FreeBlock(t testing.TB, n int) int {
	t.Helper()
	for range 1000 {
		base := freePortLow + rand.IntN(freePortHigh-freePortLow-n)
		if blockFree(base, n) {
			return base
		}
	}
	t.Fatalf("no %d free ports in a row between %d and %d", n, freePortLow, freePortHigh)
	return 0
}

// blockFree reports whether the n ports from base are free and were never
// handed out before, and marks them handed out if so.
func blockFree(base, n int) bool {
	handedMu.Lock()
	defer handedMu.Unlock()
	for p := base; p < base+n; p++ {
		if handedOut[p] {
			return false
		}
		l, err := net.Listen("tcp", fmt.Sprintf(":%d", p))
		if err != nil {
			return false
		}
		l.Close()
	}
	for p := base; p < base+n; p++ {
		handedOut[p] = true
	}
	return true
}

// The range FreePort draws from: above the well-known services a test
// machine may run, below the ephemeral range.
const freePortLow, freePortHigh = 20000, 32000

var (
	handedMu  sync.Mutex
	handedOut = map[int]bool{} // ports FreeBlock returned
)
