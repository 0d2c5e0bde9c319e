package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	dclient "github.com/dcounter/dcounter/client"
)

// TestClientFailsOverWhenANodeIsKilled: with two endpoints, the client
// keeps writing and reading after the node it was using is killed.
func TestClientFailsOverWhenANodeIsKilled(t *testing.T) {
	n1 := startNode(t, "n1", "")
	n2 := startNode(t, "n2", n1.Gossip)
	for _, p := range []*proc{n1, n2} {
		waitFor(t, 10*time.Second, func() error { return memberCount(p, 2) }, true)
	}
	c, err := dclient.New([]string{n1.HTTP, n2.HTTP})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 5 {
		if _, err := c.Add(ctx, "fo", 1); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, func() error {
		v, err := n2.value("fo")
		if err == nil && v != 5 {
			err = fmt.Errorf("n2 reads %d, want 5", v)
		}
		return err
	}, true)
	n1.kill()
	for range 5 {
		if _, err := c.Add(ctx, "fo", 1); err != nil {
			t.Fatalf("write after n1 was killed: %v", err)
		}
	}
	got, err := c.Get(ctx, "fo")
	if err != nil || got.Value != 10 {
		t.Fatalf("Get = %+v, %v; want 10", got, err)
	}
}

// TestClientRetriesALostAnswerOnce: a proxy forwards the first write to
// the node and then drops the connection instead of answering; the client
// retries with the same Idempotency-Key and the write counts once.
func TestClientRetriesALostAnswerOnce(t *testing.T) {
	n1 := startNode(t, "n1", "")
	var calls atomic.Int32
	var dropAll atomic.Bool
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, n1.HTTP+r.URL.RequestURI(), bytes.NewReader(body))
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		answer, _ := io.ReadAll(resp.Body)
		if calls.Add(1) == 1 || dropAll.Load() {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close() // the write happened; its answer is lost
			}
			return
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		w.Write(answer)
	}))
	defer proxy.Close()
	c, err := dclient.New([]string{proxy.URL}, dclient.WithBackoff(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Add(context.Background(), "once", 7)
	if err != nil {
		t.Fatal(err)
	}
	if got.Value != 7 || !got.Replayed {
		t.Errorf("Add = %+v, want value 7 replayed", got)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("proxy saw %d requests, want 2", n)
	}
	if v, err := n1.value("once"); err != nil || v != 7 {
		t.Errorf("node reads %d, %v; want 7 (counted once)", v, err)
	}
	// Without an answer at all, the outcome is unknown and the key is
	// reported for a later retry.
	dropAll.Store(true)
	_, err = c.Add(context.Background(), "once", 1)
	var e *dclient.Error
	if !errors.Is(err, dclient.ErrOutcomeUnknown) || !errors.As(err, &e) || e.IdempotencyKey == "" {
		t.Errorf("err = %v, want ErrOutcomeUnknown with the key", err)
	}
}
