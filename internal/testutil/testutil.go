// Package testutil holds what the packages' tests share: polling a
// condition with a deadline (tests never sleep to wait), and a logger that
// writes to the test's log. Only tests import it.
package testutil

import (
	"log/slog"
	"strings"
	"testing"
	"time"
)

// WaitFor polls cond until it holds, failing t after 10 s. The deadline is
// a failure bound, not a delay: it returns as soon as cond holds.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// Logger returns a logger that writes records at level and above to t.Log.
func Logger(t testing.TB, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: level}))
}

type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
