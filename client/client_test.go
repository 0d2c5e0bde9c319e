package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// fakeNode is a node's write path reduced to what the client relies on:
// it counts a keyed write once and replays its answer.
type fakeNode struct {
	mu    sync.Mutex
	value int64
	seen  map[string]bool
	keys  []string
}

func (f *fakeNode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := r.Header.Get("Idempotency-Key")
	f.keys = append(f.keys, k)
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/counters/a":
	case r.Method == http.MethodPost && r.URL.Path == "/counters/a/increment":
		if f.seen[k] {
			w.Header().Set("Idempotent-Replayed", "true")
		} else {
			f.seen[k] = true
			f.value++
		}
	case r.URL.Path == "/counters/big/increment":
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`{"error":"increment or decrement would overflow"}`))
		return
	default:
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"error":"key not found"}`))
		return
	}
	w.Write([]byte(`{"key":"a","value":` + itoa(f.value) + `}`))
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func newFake() *fakeNode { return &fakeNode{seen: map[string]bool{}} }

// deadAddr returns an address nothing listens on.
func deadAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return "http://" + a
}

func TestFailoverOnConnectionRefusedAnd503(t *testing.T) {
	f := newFake()
	good := httptest.NewServer(f)
	defer good.Close()
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"error":"node is shutting down"}`))
	}))
	defer refusing.Close()
	c, err := New([]string{deadAddr(t), refusing.URL, good.URL})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Inc(context.Background(), "a", 1)
	if err != nil || got.Value != 1 {
		t.Fatalf("Inc = %+v, %v; want value 1", got, err)
	}
	if got, err := c.Get(context.Background(), "a"); err != nil || got.Value != 1 {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	if o := c.order(); o[0] != 2 {
		t.Errorf("order after success = %v, want the answering endpoint first", o)
	}
}

func TestAllDownIsUnavailable(t *testing.T) {
	c, _ := New([]string{deadAddr(t), deadAddr(t)})
	_, err := c.Inc(context.Background(), "a", 1)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
}

// A write whose answer is lost is retried on the same endpoint with the
// same key and counted once; it is never sent to another endpoint.
func TestLostAnswerRetriedWithSameKey(t *testing.T) {
	f := newFake()
	var calls atomic.Int32
	lossy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		f.ServeHTTP(rec, r)
		if calls.Add(1) == 1 {
			// Applied, but the answer never arrives.
			hj, _ := w.(http.Hijacker)
			conn, _, _ := hj.Hijack()
			conn.Close()
			return
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	}))
	defer lossy.Close()
	other := newFake()
	otherSrv := httptest.NewServer(other)
	defer otherSrv.Close()
	c, _ := New([]string{lossy.URL, otherSrv.URL}, WithBackoff(0))
	got, err := c.Inc(context.Background(), "a", 1)
	if err != nil || got.Value != 1 || !got.Replayed {
		t.Fatalf("Inc = %+v, %v; want value 1, replayed", got, err)
	}
	if len(f.keys) != 2 || f.keys[0] == "" || f.keys[0] != f.keys[1] {
		t.Errorf("keys sent = %q, want the same generated key twice", f.keys)
	}
	if len(other.keys) != 0 {
		t.Errorf("the other endpoint got %d requests, want none", len(other.keys))
	}
}

func TestOutcomeUnknownCarriesKey(t *testing.T) {
	lossy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hj, _ := w.(http.Hijacker)
		conn, _, _ := hj.Hijack()
		conn.Close()
	}))
	defer lossy.Close()
	c, _ := New([]string{lossy.URL}, WithBackoff(0), WithMaxAttempts(2))
	_, err := c.Inc(context.Background(), "a", 1, WithIdempotencyKey("k1"))
	var e *Error
	if !errors.Is(err, ErrOutcomeUnknown) || !errors.As(err, &e) || e.IdempotencyKey != "k1" {
		t.Fatalf("err = %v, want ErrOutcomeUnknown with key k1", err)
	}
}

func TestTypedErrors(t *testing.T) {
	for _, tc := range []struct {
		status int
		body   string
		want   error
	}{
		{401, `{"error":"missing bearer token"}`, ErrUnauthorized},
		{403, `{"error":"needs write"}`, ErrForbidden},
		{404, `{"error":"key not found"}`, ErrNotFound},
		{400, `{"error":"increment or decrement would overflow"}`, ErrOverflow},
		{400, `{"error":"increment or decrement would overflow"}`, ErrBadRequest},
		{422, `{"error":"idempotency key reused"}`, ErrBadRequest},
		{500, `{"error":"log failed"}`, ErrOutcomeUnknown},
		{503, `{"error":"stopping"}`, ErrUnavailable},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(tc.status)
			w.Write([]byte(tc.body))
		}))
		c, _ := New([]string{srv.URL}, WithBackoff(0), WithMaxAttempts(1))
		_, err := c.Add(context.Background(), "k", 5)
		if !errors.Is(err, tc.want) {
			t.Errorf("status %d: err = %v, want %v", tc.status, err, tc.want)
		}
		srv.Close()
	}
}

func TestTokenSent(t *testing.T) {
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Get("Authorization")
		w.Write([]byte(`{"key":"a","value":3}`))
	}))
	defer srv.Close()
	c, _ := New([]string{srv.URL}, WithToken("s3cret"))
	if _, err := c.Get(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	if got != "Bearer s3cret" {
		t.Errorf("Authorization = %q", got)
	}
}

func TestNewRefusesBadEndpoints(t *testing.T) {
	if _, err := New(nil); err == nil {
		t.Error("New(nil) succeeded")
	}
	if _, err := New([]string{"ftp://x"}); err == nil {
		t.Error("New(ftp://x) succeeded")
	}
	c, err := New([]string{"127.0.0.1:8080/"})
	if err != nil || c.Endpoints()[0] != "http://127.0.0.1:8080" {
		t.Errorf("New(bare) = %v, %v", c.Endpoints(), err)
	}
}

// A caller's expired deadline is not held against the endpoints.
func TestDeadlineDoesNotMarkEndpointsDown(t *testing.T) {
	c, _ := New([]string{deadAddr(t), deadAddr(t)})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.Get(ctx, "a")
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want ErrUnavailable wrapping context.Canceled", err)
	}
	if len(c.downUntil) != 0 {
		t.Errorf("endpoints marked down after a cancelled call: %v", c.downUntil)
	}
}

// A write refused with 503 (nothing happened) goes to the next endpoint
// with the same idempotency key.
func TestWriteFailoverKeepsKey(t *testing.T) {
	var refusedKey string
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		refusedKey = r.Header.Get("Idempotency-Key")
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer refusing.Close()
	f := newFake()
	good := httptest.NewServer(f)
	defer good.Close()
	c, _ := New([]string{refusing.URL, good.URL})
	if _, err := c.Add(context.Background(), "a", 1); err != nil {
		t.Fatal(err)
	}
	if refusedKey == "" || len(f.keys) != 1 || f.keys[0] != refusedKey {
		t.Errorf("keys: refused %q, then %q; want the same", refusedKey, f.keys)
	}
}

func TestTLSConfig(t *testing.T) {
	srv := httptest.NewTLSServer(newFake())
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	c, _ := New([]string{srv.URL}, WithTLSConfig(&tls.Config{RootCAs: pool}))
	if got, err := c.Get(context.Background(), "a"); err != nil || got.Key != "a" {
		t.Fatalf("Get over TLS = %+v, %v", got, err)
	}
	// Without the CA the server is not trusted: an error, not a failover
	// success.
	c, _ = New([]string{srv.URL})
	if _, err := c.Get(context.Background(), "a"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Get without the CA: %v", err)
	}
}
