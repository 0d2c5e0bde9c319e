package node

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/auth"
	"github.com/dcounter/dcounter/internal/clusterkey"
)

// TestQuickAnswersAsTheHandler sends the same requests, in the same order,
// to two nodes with the same tokens: one through its own listener
// (fasthttp, where api.Quick answers counter reads and writes) and one
// through net/http serving the node's full handler. Every answer must be
// the same: status, body and the headers clients act on.
func TestQuickAnswersAsTheHandler(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens")
	os.WriteFile(tokens, []byte("read-token-0123456789 read r\nwrite-token-0123456789 write w\nadmin-token-0123456789 admin a\n"), 0o600)
	start := func(name string) *Node {
		f, err := auth.LoadFile(tokens)
		if err != nil {
			t.Fatal(err)
		}
		nd, err := New(context.Background(), Config{
			Name: name, GossipAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(),
			Auth: auth.NewGuard(f, clusterkey.Keyring{}, nil), Logger: testLogger(t),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nd.Shutdown(context.Background()) })
		return nd
	}
	quick := "http://" + start("quick").HTTPAddr()
	ref := httptest.NewServer(start("ref").handler)
	t.Cleanup(ref.Close)

	const (
		read  = "Bearer read-token-0123456789"
		write = "Bearer write-token-0123456789"
		admin = "Bearer admin-token-0123456789"
	)
	type req struct {
		method, path, body string
		hdr                map[string]string
		chunked            bool
	}
	w := func(method, path, body string, kv ...string) req {
		r := req{method: method, path: path, body: body, hdr: map[string]string{"Authorization": write}}
		for i := 0; i+1 < len(kv); i += 2 {
			r.hdr[kv[i]] = kv[i+1]
		}
		return r
	}
	reqs := []req{
		w("POST", "/increment", ""),
		w("POST", "/increment", "", "Authorization", ""),
		w("POST", "/increment", "", "Authorization", read),
		w("POST", "/increment", "", "Authorization", admin),
		w("POST", "/increment", "", "Authorization", "Bearer nope"),
		w("POST", "/increment", "", "Authorization", "Basic d3JpdGU6eA=="),
		w("GET", "/counter", "", "Authorization", read),
		w("GET", "/counter", "", "Authorization", ""),
		w("HEAD", "/counter", "", "Authorization", read),
		w("POST", "/increment", `{"amount":5}`),
		w("POST", "/increment", ` { "amount" : 7 } `),
		w("POST", "/decrement", `{"amount":3}`),
		w("POST", "/increment", `{}`),
		w("POST", "/increment", `{"amount":0}`),
		w("POST", "/increment", `{"amount":-1}`),
		w("POST", "/increment", `{"amount":"5"}`),
		w("POST", "/increment", `{"amount":1e3}`),
		w("POST", "/increment", `{"amount":05}`),
		w("POST", "/increment", `{"amount":1,"x":2}`),
		w("POST", "/increment", `{"amount":99999999999999999999}`),
		w("POST", "/increment", `not json`),
		w("POST", "/increment", `{"amount":1}{"amount":1}`),
		w("POST", "/counters/big/increment", `{"amount":9223372036854775807}`),
		w("POST", "/counters/big/increment", `{"amount":1}`),
		w("POST", "/counters/ttl/increment", `{"amount":2,"ttl_seconds":600}`),
		w("POST", "/counters/ttl/increment", `{"amount":2,"ttl_ms":5000,"ttl_mode":"always"}`),
		w("POST", "/counters/ttl/increment", `{"amount":2,"ttl_mode":"always"}`),
		w("GET", "/counters/ttl", ""),
		w("POST", "/counters/a%2Fb/increment", ""),
		w("GET", "/counters/a%2Fb", ""),
		w("POST", "/counters//increment", ""),
		w("POST", "/counters/"+strings.Repeat("k", 300)+"/increment", ""),
		w("POST", "/counters/%C3%A9t%C3%A9/increment", ""),
		w("POST", "/counters/%FF/increment", ""),
		w("POST", "/counters/sp%20ace/decrement", `{"amount":4}`),
		w("GET", "/counters/sp%20ace", ""),
		w("POST", "/counters/idem/increment", `{"amount":3}`, "Idempotency-Key", "op-1"),
		w("POST", "/counters/idem/increment", `{"amount":3}`, "Idempotency-Key", "op-1"),
		w("POST", "/counters/idem/increment", `{"amount":4}`, "Idempotency-Key", "op-1"),
		w("POST", "/counters/idem/increment", `{"amount":3}`, "Idempotency-Key", "has space"),
		w("POST", "/counters/idem/increment", `{"amount":3}`, "Idempotency-Key", strings.Repeat("i", 300)),
		w("POST", "/counters/idem/decrement", ``, "Idempotency-Key", "op-2"),
		w("GET", "/counters/idem", ""),
		w("POST", "/increment?amount=9", ""),
		w("GET", "/counter?x=1", ""),
		w("PUT", "/counter", ""),
		w("POST", "/counter", ""),
		w("GET", "/increment", ""),
		w("DELETE", "/increment", ""),
		w("GET", "/nope", ""),
		w("GET", "/counter/", ""),
		w("GET", "//counter", ""),
		w("GET", "/counters/x/y/z", ""),
		w("DELETE", "/counters/idem", "", "Idempotency-Key", "del-1"),
		w("GET", "/counters/idem", ""),
		w("PUT", "/counters/ttl/ttl", `{"seconds":30}`),
		w("DELETE", "/counters/ttl/ttl", ``),
		w("GET", "/counters?limit=10", ""),
		w("GET", "/counters?limit=0", ""),
		w("GET", "/ui", ""),
		w("GET", "/ui/", ""),
		w("POST", "/ui/", ""),
		w("GET", "/cluster/proof", ""),
		w("POST", "/increment", `{"amount":2}`, auth.HeaderRole, "admin", auth.HeaderMAC, "AAAA"),
		w("POST", "/increment", `{"amount":2}`, auth.HeaderName, "x", "Authorization", ""),
		w("POST", "/increment", strings.Repeat(" ", 70<<10)+`{"amount":1}`),
		{method: "POST", path: "/counters/chunked/increment", body: `{"amount":6}`, hdr: map[string]string{"Authorization": write}, chunked: true},
		w("GET", "/counters/chunked", ""),
		w("GET", "/counter", ""),
	}
	ttl := regexp.MustCompile(`"ttl_ms":\d+`)
	answer := func(base string, r req) string {
		var body io.Reader = strings.NewReader(r.body)
		if r.chunked {
			body = io.MultiReader(strings.NewReader(r.body)) // no length: sent chunked
		}
		hr, err := http.NewRequest(r.method, base+"/", body)
		if err != nil {
			t.Fatal(err)
		}
		// The target is sent as written, bad escapes and all.
		hr.URL.Opaque, hr.URL.RawQuery, _ = strings.Cut(r.path, "?")
		for k, v := range r.hdr {
			if v != "" {
				hr.Header.Set(k, v)
			}
		}
		resp, err := http.DefaultClient.Do(hr)
		if err != nil {
			t.Fatalf("%s %s: %v", r.method, r.path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var out bytes.Buffer
		out.WriteString(resp.Status + "\n")
		for _, h := range []string{"Content-Type", "Idempotent-Replayed", "Allow", "Www-Authenticate", "Location", "Content-Security-Policy"} {
			if v := resp.Header.Values(h); len(v) > 0 {
				out.WriteString(h + ": " + strings.Join(v, ", ") + "\n")
			}
		}
		out.Write(ttl.ReplaceAll(b, []byte(`"ttl_ms":N`)))
		return out.String()
	}
	// net/http's server refuses a target with a bad escape before any
	// handler sees it, with a text/plain 400; this one answers 400 in JSON.
	bad := w("POST", "/counters/a%zzb/increment", "")
	if got, want := answer(quick, bad), answer(ref.URL, bad); got[:4] != "400 " || want[:4] != "400 " || !strings.Contains(got, `{"error":`) {
		t.Errorf("a bad escape: answered\n%s\nnet/http answered\n%s", got, want)
	}
	for _, r := range reqs {
		got, want := answer(quick, r), answer(ref.URL, r)
		if got != want {
			t.Errorf("%s %s %q %v:\nquick path answered\n%s\nnet/http answered\n%s", r.method, r.path, trim(r.body), r.hdr, got, want)
		}
	}

	// Requests Go's client will not send: raw targets, repeated headers,
	// trailers. Each is sent twice, so that a write applied twice shows.
	raw := func(base, req string) string {
		c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, req)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return "no answer: " + err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.Status + " replayed=" + resp.Header.Get("Idempotent-Replayed") + " " + ttl.ReplaceAllString(string(b), `"ttl_ms":N`)
	}
	auth := "Authorization: " + write + "\r\n"
	for _, req := range []string{
		"POST /counters/a%2Fb{/increment HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n",
		"GET /counters/a%2Fb{ HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n",
		"POST /counters/caf\xc3\xa9/increment HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n",
		"POST /counters/q%22/increment HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n",
		"POST /counters/tr/increment HTTP/1.1\r\nHost: x\r\n" + auth + "Transfer-Encoding: chunked\r\nTrailer: Idempotency-Key\r\n\r\n" +
			"c\r\n{\"amount\":2}\r\n0\r\nIdempotency-Key: k1\r\n\r\n",
		"GET /counters/tr HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n",
		"POST /counters/two/increment HTTP/1.1\r\nHost: x\r\n" + auth + "Authorization: Bearer nope\r\nIdempotency-Key: i1\r\nIdempotency-Key: i2\r\n\r\n",
		"POST /counters/two/increment HTTP/1.1\r\nHost: x\r\nauthorization: Bearer read-token-0123456789\r\n\r\n",
		"GET /counters/two HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n",
		"POST http://x/counters/abs/increment HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n",
		"POST /counters/fwd/increment HTTP/1.1\r\nHost: x\r\n" + auth + "Dcounter-Identity-Role: admin\r\nDcounter-Identity-Mac: x\r\n\r\n",
	} {
		got, want := raw(quick, req)+" | "+raw(quick, req), raw(ref.URL, req)+" | "+raw(ref.URL, req)
		if got != want {
			t.Errorf("%q:\nquick path answered %s\nnet/http answered   %s", trim(req), got, want)
		}
	}
}

func trim(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}

// TestClientAPILimits checks the listener's own limits: an oversized
// body or header block is refused with a JSON error, and a client that
// sends half a request is cut off rather than holding a connection.
func TestClientAPILimits(t *testing.T) {
	nd, err := New(context.Background(), Config{Name: "lim", GossipAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nd.Shutdown(context.Background()) })
	raw := func(req string) string {
		c, err := net.Dial("tcp", nd.HTTPAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, req)
		b, _ := io.ReadAll(c)
		return string(b)
	}
	for _, tc := range []struct{ name, req, want string }{
		{"body", "POST /increment HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n", "413 Request Entity Too Large"},
		{"header", "GET /counter HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 9<<10) + "\r\n\r\n", "431 Request Header Fields Too Large"},
		{"garbage", "HELLO\r\n\r\n", "400 Bad Request"},
	} {
		got := raw(tc.req)
		if !strings.Contains(got, tc.want) || !strings.Contains(got, `{"error":`) || !strings.Contains(got, "Connection: close") {
			t.Errorf("%s: got %q, want %q with a JSON error and Connection: close", tc.name, got, tc.want)
		}
	}
}
