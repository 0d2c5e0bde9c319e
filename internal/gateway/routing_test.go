package gateway

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/dcounter/dcounter/internal/api"
	"github.com/dcounter/dcounter/internal/service"
)

func TestNewRejectsUnusableConfig(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{Nodes: []string{"ftp://127.0.0.1:1"}},
	} {
		if _, err := New(cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("New(%+v) = %v, want ErrConfig", cfg, err)
		}
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	tg := newTestGateway(t, Config{}, newFakeNode(t, "a"))
	if err := tg.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tg.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestCounterRoutesAreProxiedAsSent(t *testing.T) {
	n := newFakeNode(t, "a")
	tg := newTestGateway(t, Config{}, n)
	for _, tc := range []struct {
		name    string
		method  string
		uri     string
		key     string
		body    []byte
		hdr     []string
		wantCT  string
		wantIdm string
	}{
		{name: "named increment", method: "POST", uri: "/counters/hits/increment", key: "hits",
			body: []byte(`{"amount":5}`), hdr: []string{"Content-Type", "application/json"}, wantCT: "application/json"},
		{name: "escaped slash stays in the key", method: "POST", uri: "/counters/a%2Fb/decrement", key: "a/b",
			body: []byte(`{"amount":2}`), hdr: []string{"Content-Type", "application/json; charset=utf-8"},
			wantCT: "application/json; charset=utf-8"},
		{name: "escaped space and unicode", method: "GET", uri: "/counters/x%20%C3%A9", key: "x é"},
		{name: "query string kept", method: "GET", uri: "/counters/q?consistent=1&x=%2F", key: "q"},
		{name: "default increment without body", method: "POST", uri: "/increment", key: "default"},
		{name: "default decrement with key", method: "POST", uri: "/decrement", key: "default",
			body: []byte(`{}`), hdr: []string{"Content-Type", "text/plain", IdempotencyHeader, "idem-1"},
			wantCT: "text/plain", wantIdm: "idem-1"},
		{name: "keyed named write", method: "POST", uri: "/counters/k/increment", key: "k",
			body: []byte(" \n"), hdr: []string{IdempotencyHeader, "7f0c-9a1e_B~!"}, wantIdm: "7f0c-9a1e_B~!"},
		{name: "head", method: "HEAD", uri: "/counters/h", key: "h"},
		{name: "delete", method: "DELETE", uri: "/counters/d", key: "d"},
		{name: "delete escaped, keyed", method: "DELETE", uri: "/counters/a%2Fb%20c", key: "a/b c", hdr: []string{IdempotencyHeader, "del-1"}, wantIdm: "del-1"},
		{name: "set ttl", method: "PUT", uri: "/counters/t/ttl", key: "t", body: []byte(`{"seconds":5}`)},
		{name: "set ttl keyed", method: "PUT", uri: "/counters/t/ttl", key: "t", body: []byte(`{"milliseconds":1500}`), hdr: []string{IdempotencyHeader, "ttl-1"}, wantIdm: "ttl-1"},
		{name: "persist", method: "DELETE", uri: "/counters/t/ttl", key: "t"},
		{name: "write with ttl", method: "POST", uri: "/counters/r/increment", key: "r", body: []byte(`{"ttl_seconds":60,"ttl_mode":"always"}`)},
		{name: "list", method: "GET", uri: "/counters"},
		{name: "list with query", method: "GET", uri: "/counters?prefix=a%2F%20&limit=2&cursor=YS9i"},
		{name: "list head", method: "HEAD", uri: "/counters?limit=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(n.requests())
			resp := tg.do(tc.method, tc.uri, tc.body, tc.hdr...)
			if resp.Status != http.StatusOK {
				t.Fatalf("status %d, body %s", resp.Status, resp.Body)
			}
			reqs := n.requests()[before:]
			if len(reqs) != 1 {
				t.Fatalf("node received %d requests, want 1: %+v", len(reqs), reqs)
			}
			got := reqs[0]
			if got.Method != tc.method || got.URI != tc.uri || got.Key != tc.key {
				t.Errorf("node got %s %s (key %q), want %s %s (key %q)", got.Method, got.URI, got.Key, tc.method, tc.uri, tc.key)
			}
			if !bytes.Equal(got.Body, tc.body) {
				t.Errorf("node got body %q, want %q", got.Body, tc.body)
			}
			if got.ContentType != tc.wantCT || (tc.wantCT == "" && got.HasCT) {
				t.Errorf("node got Content-Type %q (present %v), want %q", got.ContentType, got.HasCT, tc.wantCT)
			}
			if got.IdemKey != tc.wantIdm {
				t.Errorf("node got Idempotency-Key %q, want %q", got.IdemKey, tc.wantIdm)
			}
		})
	}
}

func TestDefaultCounterReadIsProxied(t *testing.T) {
	n := newFakeNode(t, "a")
	n.value.Store(77)
	tg := newTestGateway(t, Config{}, n)
	before := n.counterReadCount()
	resp := tg.do("GET", "/counter", nil)
	if resp.Status != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /counter: %d %q %s", resp.Status, resp.Header.Get("Content-Type"), resp.Body)
	}
	if got := resp.answer(t); got.Value != 77 || got.Key != "default" {
		t.Errorf("GET /counter answered %+v, want default = 77", got)
	}
	if got := n.counterReadCount() - before; got != 1 {
		t.Errorf("node received %d GET /counter, want 1", got)
	}
}

func TestNodeAnswersArePassedBack(t *testing.T) {
	n := newFakeNode(t, "a")
	tg := newTestGateway(t, Config{}, n)
	for _, tc := range []struct {
		status int
		ct     string
		body   string
	}{
		{200, "application/json", `{"key":"x","value":-3}` + "\n"},
		{201, "application/vnd.dcounter+json; v=2", `{"odd":true}`},
		{400, "application/json", `{"error":"amount must be a positive integer, got 0"}` + "\n"},
		{404, "text/plain; charset=utf-8", "no such thing\n"},
		{500, "application/json", `{"error":"node: write-ahead log failed; this write's outcome is unknown"}`},
	} {
		n.setBehavior(func(_ *fakeNode, w http.ResponseWriter, _ *http.Request, _ received) {
			w.Header().Set("Content-Type", tc.ct)
			w.WriteHeader(tc.status)
			w.Write([]byte(tc.body))
		})
		resp := tg.write("x")
		if resp.Status != tc.status || resp.Header.Get("Content-Type") != tc.ct || string(resp.Body) != tc.body {
			t.Errorf("node answered %d %q %q; gateway answered %d %q %q",
				tc.status, tc.ct, tc.body, resp.Status, resp.Header.Get("Content-Type"), resp.Body)
		}
	}
}

func TestGatewayAnswersBadRequestsItself(t *testing.T) {
	n := newFakeNode(t, "a")
	tg := newTestGateway(t, Config{}, n)
	long := strings.Repeat("k", 513)
	for _, tc := range []struct {
		method, uri string
		body        []byte
		status      int
		allow       string
	}{
		{"GET", "/", nil, 404, ""},
		{"GET", "/nope", nil, 404, ""},
		{"GET", "/counters/a/b", nil, 404, ""},
		{"POST", "/counters/a/reset", nil, 404, ""},
		{"GET", "/counter/extra", nil, 404, ""},
		{"POST", "/counter", nil, 405, "GET, HEAD"},
		{"PATCH", "/counters/a", nil, 405, "GET, HEAD, DELETE"},
		{"POST", "/counters", nil, 405, "GET, HEAD"},
		{"GET", "/counters/a/ttl", nil, 405, "PUT, DELETE"},
		{"DELETE", "/counters//ttl", nil, 400, ""},                                    // empty key
		{"PUT", "/counters/a/ttl", bytes.Repeat([]byte(" "), api.MaxBody+1), 413, ""}, // body bound for every write
		{"GET", "/increment", nil, 405, "POST"},
		{"PUT", "/counters/a/decrement", []byte(`{"amount":1}`), 405, "POST"},
		{"POST", "/nodes", nil, 405, "GET, HEAD"},
		{"POST", "/health", nil, 405, "GET, HEAD"},
		{"GET", "/counters/%FF", nil, 400, ""},                     // not UTF-8
		{"POST", "/counters//increment", nil, 400, ""},             // empty key
		{"GET", "/counters/" + long, nil, 400, ""},                 // 513 bytes
		{"POST", "/counters/" + long + "/increment", nil, 400, ""}, // 513 bytes
		{"POST", "/increment", bytes.Repeat([]byte(" "), api.MaxBody+1), 413, ""},
		{"POST", "/counters/big/increment", bytes.Repeat([]byte("9"), 200<<10), 413, ""},
	} {
		resp := tg.do(tc.method, tc.uri, tc.body)
		if resp.Status != tc.status {
			t.Errorf("%s %.60s: status %d, want %d (body %s)", tc.method, tc.uri, resp.Status, tc.status, resp.Body)
			continue
		}
		if got := resp.Header.Get("Allow"); got != tc.allow {
			t.Errorf("%s %.60s: Allow %q, want %q", tc.method, tc.uri, got, tc.allow)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %.60s: Content-Type %q", tc.method, tc.uri, ct)
		}
		if msg := resp.errorMessage(t); msg == "" {
			t.Errorf("%s %.60s: empty error message", tc.method, tc.uri)
		}
	}
	if got := n.requests(); len(got) != 0 {
		t.Errorf("the node received %d requests, want none: %+v", len(got), got[0])
	}
}

func TestBadIdempotencyKeyIsRefusedByTheGateway(t *testing.T) {
	n := newFakeNode(t, "a")
	tg := newTestGateway(t, Config{}, n)
	for _, k := range []string{"has space", "tab\there", "caf\xc3\xa9", strings.Repeat("k", service.MaxIdempotencyKey+1)} {
		resp := tg.do("POST", "/counters/x/increment", nil, IdempotencyHeader, k)
		if resp.Status != http.StatusBadRequest || !strings.Contains(resp.errorMessage(t), "Idempotency-Key") {
			t.Errorf("Idempotency-Key %.20q: %d %s, want 400", k, resp.Status, resp.Body)
		}
	}
	if got := n.count(); got != 0 {
		t.Errorf("the node received %d requests, want none", got)
	}
	longest := strings.Repeat("k", service.MaxIdempotencyKey)
	if resp := tg.do("POST", "/counters/x/increment", nil, IdempotencyHeader, longest); resp.Status != http.StatusOK {
		t.Errorf("Idempotency-Key of %d bytes: %d %s, want 200", len(longest), resp.Status, resp.Body)
	}
	if reqs := n.requests(); len(reqs) != 1 || reqs[0].IdemKey != longest {
		t.Errorf("the node did not receive the longest key intact")
	}
}

func TestReplayedAnswerIsMarked(t *testing.T) {
	n := newFakeNode(t, "a")
	n.setBehavior(func(_ *fakeNode, w http.ResponseWriter, _ *http.Request, rec received) {
		w.Header().Set(api.ReplayedHeader, "true")
		api.WriteJSON(w, http.StatusOK, api.CounterResponse{Key: rec.Key, Value: 3})
	})
	tg := newTestGateway(t, Config{}, n)
	resp := tg.keyedWrite("x", "again")
	if resp.Status != http.StatusOK || resp.Header.Get(api.ReplayedHeader) != "true" {
		t.Errorf("replayed answer: %d, %s = %q; want 200 marked replayed", resp.Status, api.ReplayedHeader, resp.Header.Get(api.ReplayedHeader))
	}
	n.setBehavior(nil)
	if resp := tg.keyedWrite("x", "fresh"); resp.Header.Get(api.ReplayedHeader) != "" {
		t.Errorf("fresh answer marked %s", api.ReplayedHeader)
	}
}

func TestBodyOfExactlyMaxBodyIsForwarded(t *testing.T) {
	n := newFakeNode(t, "a")
	tg := newTestGateway(t, Config{}, n)
	body := append([]byte(`{"amount":1}`), bytes.Repeat([]byte(" "), api.MaxBody-12)...)
	if len(body) != api.MaxBody {
		t.Fatalf("test body is %d bytes", len(body))
	}
	if resp := tg.do("POST", "/increment", body); resp.Status != http.StatusOK {
		t.Fatalf("status %d, body %s", resp.Status, resp.Body)
	}
	reqs := n.requests()
	if len(reqs) != 1 || !bytes.Equal(reqs[0].Body, body) {
		t.Fatalf("node received %d requests; body intact: %v", len(reqs), len(reqs) == 1 && bytes.Equal(reqs[0].Body, body))
	}
}
