package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/service"
)

// doH is do with request headers.
func doH(t *testing.T, srv *httptest.Server, method, path, body string, hdr map[string]string) result {
	t.Helper()
	status, header, b := sendBody(t, srv, method, path, body, "", hdr)
	r := result{status: status, header: header}
	if err := json.Unmarshal([]byte(b), &r.body); err != nil {
		t.Fatalf("%s %s: body %q: %v", method, path, b, err)
	}
	return r
}

// want checks a counter answer: status 200, key, value and ttl_ms (0 for
// absent).
func wantCounter(t *testing.T, r result, key string, value float64, ttlMs float64) {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("status %d %v, want 200", r.status, r.body)
	}
	got, hasTTL := r.body["ttl_ms"]
	if r.body["key"] != key || r.body["value"] != value || (ttlMs == 0) == hasTTL || (hasTTL && got != ttlMs) {
		t.Fatalf("got %v, want key %q value %v ttl_ms %v", r.body, key, value, ttlMs)
	}
}

func TestWriteWithTTLExpires(t *testing.T) {
	srv, f := newFakeServer(t)
	wantCounter(t, do(t, srv, "POST", "/counters/rl/increment", `{"ttl_seconds":60}`), "rl", 1, 60_000)
	f.advance(10 * time.Second)
	// if_none (the default): the window is not extended by later hits.
	wantCounter(t, do(t, srv, "POST", "/counters/rl/increment", `{"amount":2,"ttl_seconds":60}`), "rl", 3, 50_000)
	wantCounter(t, do(t, srv, "POST", "/counters/rl/increment", `{"ttl_ms":5,"ttl_mode":"if_none"}`), "rl", 4, 50_000)
	wantCounter(t, do(t, srv, "GET", "/counters/rl", ""), "rl", 4, 50_000)
	// A write without a TTL leaves the expiry alone.
	wantCounter(t, do(t, srv, "POST", "/counters/rl/decrement", ""), "rl", 3, 50_000)
	// always: replaces it.
	wantCounter(t, do(t, srv, "POST", "/counters/rl/increment", `{"ttl_ms":1500,"ttl_mode":"always"}`), "rl", 4, 1500)
	f.advance(1499 * time.Millisecond)
	wantCounter(t, do(t, srv, "GET", "/counters/rl", ""), "rl", 4, 1)
	f.advance(time.Millisecond)
	// Expired: reads 0 with no ttl_ms, and the next write counts from 0
	// in a new window.
	wantCounter(t, do(t, srv, "GET", "/counters/rl", ""), "rl", 0, 0)
	wantCounter(t, do(t, srv, "POST", "/counters/rl/increment", `{"ttl_seconds":60}`), "rl", 1, 60_000)
	// The default key takes a TTL too.
	wantCounter(t, do(t, srv, "POST", "/increment", `{"ttl_seconds":5}`), "default", 1, 5000)
	wantCounter(t, do(t, srv, "GET", "/counter", ""), "default", 1, 5000)
}

func TestTTLRoutes(t *testing.T) {
	srv, f := newFakeServer(t)
	r := do(t, srv, "PUT", "/counters/k/ttl", `{"seconds":10}`)
	if r.status != 404 || r.body["error"] != "key not found" {
		t.Fatalf("PUT ttl on an absent key: %d %v", r.status, r.body)
	}
	if r := do(t, srv, "DELETE", "/counters/k/ttl", ""); r.status != 404 || r.body["error"] != "key not found" {
		t.Fatalf("DELETE ttl on an absent key: %d %v", r.status, r.body)
	}
	do(t, srv, "POST", "/counters/k/increment", `{"amount":7}`)
	wantCounter(t, do(t, srv, "GET", "/counters/k", ""), "k", 7, 0)
	wantCounter(t, do(t, srv, "PUT", "/counters/k/ttl", `{"seconds":10}`), "k", 7, 10_000)
	wantCounter(t, do(t, srv, "PUT", "/counters/k/ttl", `{"milliseconds":2500}`), "k", 7, 2500) // replaces, even when shorter
	wantCounter(t, do(t, srv, "DELETE", "/counters/k/ttl", ""), "k", 7, 0)
	wantCounter(t, do(t, srv, "DELETE", "/counters/k/ttl", ""), "k", 7, 0) // already persistent: fine
	f.advance(time.Hour)
	wantCounter(t, do(t, srv, "GET", "/counters/k", ""), "k", 7, 0)
	wantCounter(t, do(t, srv, "PUT", "/counters/k/ttl", `{"seconds":1}`), "k", 7, 1000)
	f.advance(time.Second)
	if r := do(t, srv, "PUT", "/counters/k/ttl", `{"seconds":10}`); r.status != 404 {
		t.Fatalf("PUT ttl on an expired key: %d %v", r.status, r.body)
	}
	// Escaped keys.
	do(t, srv, "POST", "/counters/a%2Fttl/increment", "")
	wantCounter(t, do(t, srv, "PUT", "/counters/a%2Fttl/ttl", `{"seconds":3}`), "a/ttl", 1, 3000)
	do(t, srv, "POST", "/counters/ttl/increment", "")
	wantCounter(t, do(t, srv, "PUT", "/counters/ttl/ttl", `{"seconds":3}`), "ttl", 1, 3000)
}

func TestDelete(t *testing.T) {
	srv, f := newFakeServer(t)
	do(t, srv, "POST", "/counters/d/increment", `{"amount":5,"ttl_seconds":60}`)
	if r := do(t, srv, "DELETE", "/counters/d", ""); r.status != 200 || r.body["key"] != "d" || r.body["deleted"] != true {
		t.Fatalf("delete a live key: %d %v", r.status, r.body)
	}
	wantCounter(t, do(t, srv, "GET", "/counters/d", ""), "d", 0, 0)
	if r := do(t, srv, "DELETE", "/counters/d", ""); r.status != 200 || r.body["deleted"] != false {
		t.Fatalf("delete a deleted key: %d %v", r.status, r.body)
	}
	if r := do(t, srv, "DELETE", "/counters/never", ""); r.status != 200 || r.body["deleted"] != false {
		t.Fatalf("delete an absent key: %d %v", r.status, r.body)
	}
	// A write after a delete counts from 0 without the old expiry.
	wantCounter(t, do(t, srv, "POST", "/counters/d/increment", ""), "d", 1, 0)
	// An expired key is not live: deleting it reports false.
	do(t, srv, "POST", "/counters/e/increment", `{"ttl_ms":10}`)
	f.advance(10 * time.Millisecond)
	if r := do(t, srv, "DELETE", "/counters/e", ""); r.body["deleted"] != false {
		t.Fatalf("delete an expired key: %v", r.body)
	}
	// The default key and escaped keys.
	do(t, srv, "POST", "/increment", "")
	if r := do(t, srv, "DELETE", "/counters/default", ""); r.body["deleted"] != true {
		t.Fatalf("delete default: %v", r.body)
	}
	do(t, srv, "POST", "/counters/a%2Fb%20c/increment", "")
	if r := do(t, srv, "DELETE", "/counters/a%2Fb%20c", ""); r.body["key"] != "a/b c" || r.body["deleted"] != true {
		t.Fatalf("delete an escaped key: %v", r.body)
	}
	// DELETE ignores a body, as GET does.
	if r := do(t, srv, "DELETE", "/counters/d", `{"whatever":1}`); r.status != 200 || r.body["deleted"] != true {
		t.Fatalf("delete with a body: %d %v", r.status, r.body)
	}
}

func TestLifecycleIdempotency(t *testing.T) {
	srv, _ := newFakeServer(t)
	do(t, srv, "POST", "/counters/i/increment", "")
	idem := func(k string) map[string]string { return map[string]string{IdempotencyHeader: k} }
	steps := []struct {
		method, path, body, key string
		replayed                bool
		check                   func(r result) bool
	}{
		{"PUT", "/counters/i/ttl", `{"seconds":30}`, "t1", false, func(r result) bool { return r.body["ttl_ms"] == 30_000.0 }},
		{"PUT", "/counters/i/ttl", `{"seconds":30}`, "t1", true, func(r result) bool { return r.body["ttl_ms"] == 30_000.0 }},
		{"DELETE", "/counters/i/ttl", "", "t2", false, func(r result) bool { _, has := r.body["ttl_ms"]; return !has }},
		{"DELETE", "/counters/i/ttl", "", "t2", true, func(r result) bool { _, has := r.body["ttl_ms"]; return !has }},
		{"DELETE", "/counters/i", "", "d1", false, func(r result) bool { return r.body["deleted"] == true }},
		// The replay is the first answer, not "false" from a second delete.
		{"DELETE", "/counters/i", "", "d1", true, func(r result) bool { return r.body["deleted"] == true }},
		{"POST", "/counters/i/increment", `{"ttl_seconds":9}`, "a1", false, func(r result) bool { return r.body["value"] == 1.0 }},
		{"POST", "/counters/i/increment", `{"ttl_seconds":9}`, "a1", true, func(r result) bool { return r.body["value"] == 1.0 }},
	}
	for _, s := range steps {
		r := doH(t, srv, s.method, s.path, s.body, idem(s.key))
		if r.status != 200 || (r.header.Get(ReplayedHeader) == "true") != s.replayed || !s.check(r) {
			t.Fatalf("%s %s key %s: %d %v %v, want replayed=%v", s.method, s.path, s.key, r.status, r.body, r.header, s.replayed)
		}
	}
	// A key reused for another request is refused.
	if r := doH(t, srv, "DELETE", "/counters/other", "", idem("t1")); r.status != 422 {
		t.Fatalf("reused key: %d %v", r.status, r.body)
	}
	for _, rt := range []struct{ method, path, body string }{
		{"DELETE", "/counters/i", ""}, {"PUT", "/counters/i/ttl", `{"seconds":1}`}, {"DELETE", "/counters/i/ttl", ""},
	} {
		if r := doH(t, srv, rt.method, rt.path, rt.body, idem("bad key")); r.status != 400 || !strings.Contains(r.body["error"].(string), "Idempotency-Key") {
			t.Fatalf("%s %s with a bad Idempotency-Key: %d %v", rt.method, rt.path, r.status, r.body)
		}
	}
}

func TestLifecycleBadInput(t *testing.T) {
	srv, _ := newFakeServer(t)
	do(t, srv, "POST", "/counters/x/increment", "")
	tenYears := int64(service.MaxTTL / time.Second)
	cases := []struct {
		name, method, path, body string
		status                   int
		msg                      string
		allow                    string
	}{
		// PUT .../ttl bodies.
		{"ttl empty", "PUT", "/counters/x/ttl", "", 400, "no TTL given", ""},
		{"ttl {}", "PUT", "/counters/x/ttl", "{}", 400, "no TTL given", ""},
		{"ttl both", "PUT", "/counters/x/ttl", `{"seconds":1,"milliseconds":1}`, 400, "not both", ""},
		{"ttl zero", "PUT", "/counters/x/ttl", `{"seconds":0}`, 400, "positive integer", ""},
		{"ttl negative", "PUT", "/counters/x/ttl", `{"seconds":-1}`, 400, "positive integer", ""},
		{"ttl fraction", "PUT", "/counters/x/ttl", `{"seconds":1.5}`, 400, "positive integer", ""},
		{"ttl exponent", "PUT", "/counters/x/ttl", `{"seconds":1e3}`, 400, "positive integer", ""},
		{"ttl string", "PUT", "/counters/x/ttl", `{"seconds":"10"}`, 400, "positive integer", ""},
		{"ttl null", "PUT", "/counters/x/ttl", `{"seconds":null}`, 400, "positive integer", ""},
		{"ttl too long", "PUT", "/counters/x/ttl", fmt.Sprintf(`{"seconds":%d}`, tenYears+1), 400, "at most", ""},
		{"ttl ms too long", "PUT", "/counters/x/ttl", fmt.Sprintf(`{"milliseconds":%d}`, tenYears*1000+1), 400, "at most", ""},
		{"ttl beyond uint64", "PUT", "/counters/x/ttl", `{"seconds":184467440737095516160}`, 400, "at most", ""},
		{"ttl unknown field", "PUT", "/counters/x/ttl", `{"secs":10}`, 400, "unknown field", ""},
		{"ttl trailing", "PUT", "/counters/x/ttl", `{"seconds":10} {}`, 400, "trailing", ""},
		{"ttl not an object", "PUT", "/counters/x/ttl", `10`, 400, "JSON object", ""},
		{"ttl bad json", "PUT", "/counters/x/ttl", `{"seconds":`, 400, `{"seconds":N}`, ""},
		{"ttl too large", "PUT", "/counters/x/ttl", `{"seconds":1,"p":"` + strings.Repeat("x", MaxBody) + `"}`, 413, "larger than", ""},
		// Write-with-TTL bodies.
		{"write ttl both", "POST", "/counters/x/increment", `{"ttl_seconds":1,"ttl_ms":1}`, 400, "not both", ""},
		{"write ttl zero", "POST", "/counters/x/increment", `{"ttl_ms":0}`, 400, "positive integer", ""},
		{"write ttl string", "POST", "/counters/x/increment", `{"ttl_seconds":"5"}`, 400, "positive integer", ""},
		{"write ttl fraction", "POST", "/counters/x/increment", `{"ttl_seconds":0.5}`, 400, "positive integer", ""},
		{"write ttl too long", "POST", "/counters/x/decrement", fmt.Sprintf(`{"ttl_seconds":%d}`, tenYears+1), 400, "at most", ""},
		{"write mode alone", "POST", "/counters/x/increment", `{"ttl_mode":"always"}`, 400, "without ttl_seconds", ""},
		{"write mode unknown", "POST", "/counters/x/increment", `{"ttl_seconds":5,"ttl_mode":"sometimes"}`, 400, "ttl_mode", ""},
		{"write mode not a string", "POST", "/counters/x/increment", `{"ttl_seconds":5,"ttl_mode":1}`, 400, "ttl_mode", ""},
		{"write mode case", "POST", "/counters/x/increment", `{"ttl_seconds":5,"ttl_mode":"ALWAYS"}`, 400, "ttl_mode", ""},
		{"write unknown field", "POST", "/counters/x/increment", `{"ttl":5}`, 400, "unknown field", ""},
		// Keys.
		{"delete empty key", "DELETE", "/counters/", "", 400, "1-512 bytes", ""},
		{"delete bad utf8", "DELETE", "/counters/%FF", "", 400, "UTF-8", ""},
		{"ttl key too long", "PUT", "/counters/" + strings.Repeat("k", 513) + "/ttl", `{"seconds":1}`, 400, "512 bytes", ""},
		// Methods.
		{"get ttl", "GET", "/counters/x/ttl", "", 405, "method not allowed", "PUT, DELETE"},
		{"post ttl", "POST", "/counters/x/ttl", "", 405, "method not allowed", "PUT, DELETE"},
		{"put key", "PUT", "/counters/x", "", 405, "method not allowed", "GET, HEAD, DELETE"},
		{"post key", "POST", "/counters/x", "", 405, "method not allowed", "GET, HEAD, DELETE"},
		{"post list", "POST", "/counters", "", 405, "method not allowed", "GET, HEAD"},
		{"delete list", "DELETE", "/counters", "", 405, "method not allowed", "GET, HEAD"},
		{"delete increment", "DELETE", "/counters/x/increment", "", 405, "method not allowed", "POST"},
		{"delete default", "DELETE", "/counter", "", 405, "method not allowed", "GET, HEAD"},
		{"deeper ttl", "PUT", "/counters/x/ttl/more", "", 404, "not found", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := do(t, srv, c.method, c.path, c.body)
			if r.status != c.status {
				t.Fatalf("status %d, want %d (%v)", r.status, c.status, r.body)
			}
			if msg, _ := r.body["error"].(string); !strings.Contains(msg, c.msg) {
				t.Fatalf("error %q, want it to mention %q", msg, c.msg)
			}
			if got := r.header.Get("Allow"); got != c.allow {
				t.Fatalf("Allow %q, want %q", got, c.allow)
			}
		})
	}
	wantCounter(t, do(t, srv, "GET", "/counters/x", ""), "x", 1, 0) // nothing above changed it
}

// listAll pages through GET /counters with query q (without cursor),
// returning the keys and values in order and the number of pages.
func listAll(t *testing.T, srv *httptest.Server, q url.Values) (keys []string, values map[string]float64, pages int) {
	t.Helper()
	values = map[string]float64{}
	cursor := ""
	for {
		qq := url.Values{}
		for k, v := range q {
			qq[k] = v
		}
		if cursor != "" {
			qq.Set("cursor", cursor)
		}
		r := do(t, srv, "GET", "/counters?"+qq.Encode(), "")
		if r.status != 200 {
			t.Fatalf("list %v: %d %v", qq, r.status, r.body)
		}
		pages++
		items, ok := r.body["items"].([]any)
		if !ok {
			t.Fatalf("list %v: items is not an array: %v", qq, r.body)
		}
		for _, it := range items {
			m := it.(map[string]any)
			k := m["key"].(string)
			keys = append(keys, k)
			values[k] = m["value"].(float64)
		}
		next, has := r.body["next"]
		if !has {
			return keys, values, pages
		}
		cursor = next.(string)
		if cursor == "" || pages > 1000 {
			t.Fatalf("bad next %q after %d pages", cursor, pages)
		}
	}
}

func TestList(t *testing.T) {
	srv, f := newFakeServer(t)
	keys := []string{"a", "a b", "a/b", "a?x=1&y", "a%2F", "a+b", "ab", "b", "café", "a\x00z", "a#frag", "z\u2603"}
	for i, k := range keys {
		do(t, srv, "POST", "/counters/"+url.PathEscape(k)+"/increment", fmt.Sprintf(`{"amount":%d}`, i+1))
	}
	want := append([]string(nil), keys...)
	sort.Strings(want)
	for _, limit := range []string{"", "1", "2", "5", "1000"} {
		q := url.Values{}
		if limit != "" {
			q.Set("limit", limit)
		}
		got, values, pages := listAll(t, srv, q)
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("limit %q: keys %q, want %q", limit, got, want)
		}
		for i, k := range keys {
			if values[k] != float64(i+1) {
				t.Fatalf("limit %q: %q = %v, want %d", limit, k, values[k], i+1)
			}
		}
		if limit == "1" && pages != len(keys)+1 && pages != len(keys) {
			t.Fatalf("limit 1: %d pages for %d keys", pages, len(keys))
		}
	}
	// Prefixes, including ones that need escaping.
	for _, prefix := range []string{"a", "a?", "a+", "a%", "a ", "zz", "caf", "a\x00", "a/", "a#"} {
		var wantKeys []string
		for _, k := range want {
			if strings.HasPrefix(k, prefix) {
				wantKeys = append(wantKeys, k)
			}
		}
		got, _, _ := listAll(t, srv, url.Values{"prefix": {prefix}, "limit": {"2"}})
		if strings.Join(got, "|") != strings.Join(wantKeys, "|") || (prefix == "a" && len(got) != 9) {
			t.Fatalf("prefix %q: %q, want %q", prefix, got, wantKeys)
		}
	}
	// Deleted and expired keys are not listed; ttl_ms shows on expiring ones.
	do(t, srv, "DELETE", "/counters/ab", "")
	do(t, srv, "PUT", "/counters/b/ttl", `{"seconds":5}`)
	r := do(t, srv, "GET", "/counters?prefix=b", "")
	items := r.body["items"].([]any)
	if len(items) != 1 || items[0].(map[string]any)["ttl_ms"] != 5000.0 {
		t.Fatalf("expiring key listed as %v", r.body)
	}
	if _, has := r.body["next"]; has {
		t.Fatalf("last page has a next: %v", r.body)
	}
	f.advance(5 * time.Second)
	got, _, _ := listAll(t, srv, url.Values{})
	if strings.Contains("|"+strings.Join(got, "|")+"|", "|ab|") || strings.Contains("|"+strings.Join(got, "|")+"|", "|b|") {
		t.Fatalf("deleted or expired keys listed: %q", got)
	}
	// No keys: an empty array, not null.
	if r := do(t, srv, "GET", "/counters?prefix=nothing", ""); r.status != 200 || r.body["items"] == nil {
		t.Fatalf("empty listing: %v", r.body)
	}
}

func TestListDefaultLimitAndShortPages(t *testing.T) {
	srv, f := newFakeServer(t)
	for i := 0; i < DefaultListLimit+5; i++ {
		do(t, srv, "POST", fmt.Sprintf("/counters/k%03d/increment", i), "")
	}
	r := do(t, srv, "GET", "/counters", "")
	if n := len(r.body["items"].([]any)); n != DefaultListLimit || r.body["next"] == nil {
		t.Fatalf("first page: %d items, next %v", n, r.body["next"])
	}
	// A backend that stops early over dead (expired, not yet reclaimed)
	// keys returns short, even empty, pages with a next: clients must page on.
	for i := 0; i < 50; i++ {
		do(t, srv, "PUT", fmt.Sprintf("/counters/k%03d/ttl", i), `{"seconds":1}`)
	}
	f.advance(2 * time.Second)
	f.mu.Lock()
	f.scan = 20
	f.mu.Unlock()
	r = do(t, srv, "GET", "/counters", "")
	if n := len(r.body["items"].([]any)); n != 0 || r.body["next"] == nil {
		t.Fatalf("page over dead keys: %v", r.body)
	}
	got, _, _ := listAll(t, srv, url.Values{"limit": {"7"}})
	if len(got) != DefaultListLimit+5-50 || got[0] != "k050" {
		t.Fatalf("paged %d keys from %v", len(got), got[:min(3, len(got))])
	}
}

func TestListBadQuery(t *testing.T) {
	srv := newTestServer(t)
	for _, q := range []string{
		"limit=0", "limit=1001", "limit=-1", "limit=1.5", "limit=abc", "limit=", "limit=99999999999999999999999",
		"limit=1&limit=2", "prefix=a&prefix=b", "perfix=a", "cursor=!!!", "cursor=" + EncodeCursor("x") + "=",
		"cursor=" + url.QueryEscape("YS+/Yg"), "cursor=" + EncodeCursor(strings.Repeat("k", 513)), "cursor=" + EncodeCursor("\xff"),
		"prefix=" + strings.Repeat("p", 513), "prefix=%FF", "prefix=%zz",
	} {
		r := do(t, srv, "GET", "/counters?"+q, "")
		if r.status != 400 || !strings.Contains(r.body["error"].(string), "bad query parameter") {
			t.Errorf("?%s: %d %v, want 400", q, r.status, r.body)
		}
	}
	for _, q := range []string{"limit=1000", "limit=1", "cursor=", "prefix=", "prefix=" + strings.Repeat("p", 512), "cursor=" + EncodeCursor("zzz")} {
		if r := do(t, srv, "GET", "/counters?"+q, ""); r.status != 200 {
			t.Errorf("?%s: %d %v, want 200", q, r.status, r.body)
		}
	}
}

func TestCursorRoundTrip(t *testing.T) {
	for _, k := range []string{"a", "a b", "a/b?c=d&e#f", "é\u2603", "\x00", strings.Repeat("z", 512)} {
		c := EncodeCursor(k)
		if strings.ContainsAny(c, "+/=?&#% ") {
			t.Errorf("cursor %q of %q needs escaping", c, k)
		}
		if got, err := DecodeCursor(c); err != nil || got != k {
			t.Errorf("DecodeCursor(EncodeCursor(%q)) = %q, %v", k, got, err)
		}
	}
}

// errBackend fails every call with err.
type errBackend struct {
	fakeBackend
	err error
}

func (e *errBackend) Delete(context.Context, string, string) (bool, bool, error) {
	return false, false, e.err
}
func (e *errBackend) SetTTL(context.Context, string, time.Duration, string) (service.Counter, bool, error) {
	return service.Counter{}, false, e.err
}
func (e *errBackend) List(context.Context, service.ListRequest) (service.ListPage, error) {
	return service.ListPage{}, e.err
}

func TestLifecycleBackendErrors(t *testing.T) {
	for _, c := range []struct {
		err    error
		status int
	}{
		{service.Unavailable(errors.New("not the leader of anything")), 503},
		{context.DeadlineExceeded, 503},
		{errors.New("disk on fire"), 500},
	} {
		srv := httptest.NewServer(NewHandler(&errBackend{err: c.err}, nil, nil))
		for _, rt := range []struct{ method, path, body string }{
			{"DELETE", "/counters/k", ""}, {"PUT", "/counters/k/ttl", `{"seconds":1}`}, {"DELETE", "/counters/k/ttl", ""}, {"GET", "/counters", ""},
		} {
			if r := do(t, srv, rt.method, rt.path, rt.body); r.status != c.status {
				t.Errorf("%v: %s %s = %d %v, want %d", c.err, rt.method, rt.path, r.status, r.body, c.status)
			}
		}
		srv.Close()
	}
}
