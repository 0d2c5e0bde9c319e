// Package client is a Go client for dcounter's HTTP API (a node's or the
// gateway's).
//
// A Client holds one or more endpoints and fails over between them:
// a request that did not reach a server (connection refused, DNS failure)
// or that a server refused before doing anything (503) is tried on the
// next endpoint. Endpoints that failed so are tried last for a while.
//
// Writes are retry-safe by default: every logical write (Add, Delete,
// SetTTL, Persist) carries an Idempotency-Key generated with crypto/rand,
// and the same key on every retry of that write, so a retried write is
// applied at most once. Idempotency keys are remembered per node, so a
// write whose outcome is unknown (the request was sent but no answer came
// back) is retried only on the endpoint that may have applied it, never
// on another one; if it still gets no answer the error is
// ErrOutcomeUnknown and the caller may retry later with the same key
// (WithIdempotencyKey).
//
// Errors are *Error values that match the sentinels below with errors.Is.
package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Sentinels for errors.Is. Every error a Client method returns because of
// the server's answer or the network is an *Error matching one of them.
var (
	// ErrBadRequest: the server refused the request as malformed (400,
	// 413, 422: for example a bad key or amount, or an idempotency key
	// reused for a different write).
	ErrBadRequest = errors.New("client: bad request")
	// ErrOverflow: the write would take the counter beyond int64. It also
	// matches ErrBadRequest.
	ErrOverflow = errors.New("client: counter would overflow")
	// ErrUnauthorized: no valid bearer token (401).
	ErrUnauthorized = errors.New("client: unauthorized")
	// ErrForbidden: the token's role does not allow the request (403).
	ErrForbidden = errors.New("client: forbidden")
	// ErrNotFound: the key is not live (SetTTL, Persist) or the route is
	// unknown (404).
	ErrNotFound = errors.New("client: not found")
	// ErrUnavailable: no endpoint could take the request, and none applied
	// it (every one unreachable or answering 503).
	ErrUnavailable = errors.New("client: unavailable")
	// ErrOutcomeUnknown: a write was sent but no answer came back (or the
	// server answered 500), so it may or may not have been applied.
	// Retrying it with the same idempotency key is safe.
	ErrOutcomeUnknown = errors.New("client: outcome unknown")
)

// Error is a failed request.
type Error struct {
	Kind       error  // one of the sentinels
	StatusCode int    // the HTTP status, 0 if no answer came back
	Message    string // the server's {"error":…}, if any
	Endpoint   string // the endpoint that answered last
	// IdempotencyKey is the write's key, so that a caller can retry a
	// write of unknown outcome later with WithIdempotencyKey.
	IdempotencyKey string
	Err            error // the transport error, if any
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Kind.Error())
	if e.Endpoint != "" {
		b.WriteString(": " + e.Endpoint)
	}
	if e.StatusCode != 0 {
		fmt.Fprintf(&b, ": %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

// Is matches Kind, and ErrBadRequest for an overflow.
func (e *Error) Is(target error) bool {
	return target == e.Kind || (e.Kind == ErrOverflow && target == ErrBadRequest)
}

// Unwrap returns the transport error, if any (for errors.As, e.g. of a
// *url.Error or context.DeadlineExceeded).
func (e *Error) Unwrap() error { return e.Err }

// Counter is one counter as the server answered for it.
type Counter struct {
	Key   string
	Value int64
	// TTL is the time left before the key expires; 0 if it has no expiry.
	TTL time.Duration
	// Replayed reports that the server answered a retry of a write it had
	// already applied with that write's first answer.
	Replayed bool
}

// Page is one page of List.
type Page struct {
	Items []Counter
	// Next is the cursor of the next page; "" at the end.
	Next string
}

// ListOptions selects a page of List.
type ListOptions struct {
	Prefix string // only keys starting with it
	Limit  int    // 1–1000; 0: the server's default (100)
	Cursor string // a previous page's Next; "": the first page
}

// Client talks to dcounter endpoints. It is safe for concurrent use.
type Client struct {
	endpoints []string
	hc        *http.Client
	token     string
	attempts  int
	backoff   time.Duration
	cooldown  time.Duration
	now       func() time.Time

	mu        sync.Mutex
	preferred int               // index of the endpoint that answered last
	downUntil map[int]time.Time // endpoints that failed, tried last until then
}

// Option configures a Client.
type Option func(*Client) error

// WithToken sends "Authorization: Bearer token" with every request.
func WithToken(token string) Option {
	return func(c *Client) error { c.token = token; return nil }
}

// WithTLSConfig sets the TLS configuration for https:// endpoints (a CA
// pool, client certificates). Of WithTLSConfig and WithHTTPClient, the last
// given wins.
func WithTLSConfig(tc *tls.Config) Option {
	return func(c *Client) error {
		c.hc = &http.Client{Transport: &http.Transport{
			TLSClientConfig:     tc.Clone(),
			Proxy:               http.ProxyFromEnvironment,
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     90 * time.Second,
		}}
		return nil
	}
}

// WithHTTPClient sends requests through hc. Its Timeout, if any, bounds
// each attempt; the context passed to a method bounds the whole call.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) error { c.hc = hc; return nil }
}

// WithMaxAttempts bounds the retries of a write of unknown outcome on its
// endpoint (default 3 attempts in all). Failover to other endpoints is not
// counted: each endpoint is tried once per call.
func WithMaxAttempts(n int) Option {
	return func(c *Client) error {
		if n < 1 {
			return fmt.Errorf("client: WithMaxAttempts(%d): want at least 1", n)
		}
		c.attempts = n
		return nil
	}
}

// WithBackoff sets the pause before retrying a write of unknown outcome
// (default 100ms, doubled on each retry).
func WithBackoff(d time.Duration) Option {
	return func(c *Client) error {
		if d < 0 {
			return fmt.Errorf("client: WithBackoff(%v): negative", d)
		}
		c.backoff = d
		return nil
	}
}

// New returns a Client for endpoints, base URLs such as
// "http://10.0.0.1:8080" or "https://gw.example:8443" (a bare host:port
// means http://).
func New(endpoints []string, opts ...Option) (*Client, error) {
	if len(endpoints) == 0 {
		return nil, errors.New("client: no endpoints")
	}
	c := &Client{
		hc:        &http.Client{},
		attempts:  3,
		backoff:   100 * time.Millisecond,
		cooldown:  5 * time.Second,
		now:       time.Now,
		downUntil: map[int]time.Time{},
	}
	for _, e := range endpoints {
		e = strings.TrimRight(strings.TrimSpace(e), "/")
		if !strings.Contains(e, "://") {
			e = "http://" + e
		}
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("client: endpoint %q: want http://host:port or https://host:port", e)
		}
		c.endpoints = append(c.endpoints, e)
	}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Endpoints returns the client's endpoints, normalised.
func (c *Client) Endpoints() []string { return append([]string(nil), c.endpoints...) }

// WriteOption modifies one write.
type WriteOption func(*writeOpts)

type writeOpts struct {
	idem      string
	ttl       time.Duration
	ttlAlways bool
}

// WithIdempotencyKey makes the write use key instead of a generated one:
// to retry, after ErrOutcomeUnknown, a write made earlier (its key is in
// Error.IdempotencyKey), even from another process.
func WithIdempotencyKey(key string) WriteOption {
	return func(o *writeOpts) { o.idem = key }
}

// WithTTL makes an Add also set the key's expiry d from now (whole
// milliseconds), only if it has none unless TTLAlways is given too.
func WithTTL(d time.Duration) WriteOption {
	return func(o *writeOpts) { o.ttl = d }
}

// TTLAlways makes WithTTL replace any expiry the key has.
func TTLAlways() WriteOption {
	return func(o *writeOpts) { o.ttlAlways = true }
}

// Get returns a counter; one that is not live reads 0.
func (c *Client) Get(ctx context.Context, key string) (Counter, error) {
	var r counterJSON
	h, err := c.do(ctx, http.MethodGet, counterPath(key), nil, "", &r)
	return r.counter(h), err
}

// Add adds delta (negative: subtracts) to a counter and returns it as the
// server saw it right after the write.
func (c *Client) Add(ctx context.Context, key string, delta int64, opts ...WriteOption) (Counter, error) {
	var o writeOpts
	for _, f := range opts {
		f(&o)
	}
	if delta == 0 {
		return Counter{}, &Error{Kind: ErrBadRequest, Message: "delta must not be 0"}
	}
	verb, amount := "/increment", uint64(delta)
	if delta < 0 {
		verb, amount = "/decrement", uint64(-delta) // -MinInt64 wraps to 1<<63 as uint64
	}
	body := `{"amount":` + strconv.FormatUint(amount, 10)
	if o.ttl != 0 {
		if o.ttl < 0 || o.ttl%time.Millisecond != 0 {
			return Counter{}, &Error{Kind: ErrBadRequest, Message: "TTL must be positive whole milliseconds"}
		}
		body += `,"ttl_ms":` + strconv.FormatInt(o.ttl.Milliseconds(), 10)
		if o.ttlAlways {
			body += `,"ttl_mode":"always"`
		}
	}
	body += "}"
	var r counterJSON
	h, err := c.write(ctx, http.MethodPost, counterPath(key)+verb, []byte(body), o.idem, &r)
	return r.counter(h), err
}

// Inc adds n to a counter.
func (c *Client) Inc(ctx context.Context, key string, n int64, opts ...WriteOption) (Counter, error) {
	return c.Add(ctx, key, n, opts...)
}

// Dec subtracts n from a counter.
func (c *Client) Dec(ctx context.Context, key string, n int64, opts ...WriteOption) (Counter, error) {
	return c.Add(ctx, key, -n, opts...)
}

// Delete resets a counter to 0 everywhere and removes it from listings;
// existed reports whether it was live on the node that took the delete.
func (c *Client) Delete(ctx context.Context, key string, opts ...WriteOption) (existed bool, err error) {
	var o writeOpts
	for _, f := range opts {
		f(&o)
	}
	var r struct {
		Deleted bool `json:"deleted"`
	}
	_, err = c.write(ctx, http.MethodDelete, counterPath(key), nil, o.idem, &r)
	return r.Deleted, err
}

// SetTTL makes a live counter expire d from now (whole milliseconds, at
// most 10 years), replacing any expiry. ErrNotFound if it is not live.
func (c *Client) SetTTL(ctx context.Context, key string, d time.Duration, opts ...WriteOption) (Counter, error) {
	var o writeOpts
	for _, f := range opts {
		f(&o)
	}
	if d <= 0 || d%time.Millisecond != 0 {
		return Counter{}, &Error{Kind: ErrBadRequest, Message: "TTL must be positive whole milliseconds"}
	}
	body := `{"milliseconds":` + strconv.FormatInt(d.Milliseconds(), 10) + `}`
	if d%time.Second == 0 {
		body = `{"seconds":` + strconv.FormatInt(int64(d/time.Second), 10) + `}`
	}
	var r counterJSON
	h, err := c.write(ctx, http.MethodPut, counterPath(key)+"/ttl", []byte(body), o.idem, &r)
	return r.counter(h), err
}

// Persist removes a live counter's expiry. ErrNotFound if it is not live.
func (c *Client) Persist(ctx context.Context, key string, opts ...WriteOption) (Counter, error) {
	var o writeOpts
	for _, f := range opts {
		f(&o)
	}
	var r counterJSON
	h, err := c.write(ctx, http.MethodDelete, counterPath(key)+"/ttl", nil, o.idem, &r)
	return r.counter(h), err
}

// List returns one page of live counters in byte-wise key order. Follow
// Page.Next until it is "". A listing is not a snapshot.
func (c *Client) List(ctx context.Context, opts ListOptions) (Page, error) {
	q := url.Values{}
	if opts.Prefix != "" {
		q.Set("prefix", opts.Prefix)
	}
	if opts.Limit != 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	if opts.Cursor != "" {
		q.Set("cursor", opts.Cursor)
	}
	path := "/counters"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var r struct {
		Items []counterJSON `json:"items"`
		Next  string        `json:"next"`
	}
	_, err := c.do(ctx, http.MethodGet, path, nil, "", &r)
	p := Page{Next: r.Next, Items: make([]Counter, 0, len(r.Items))}
	for _, it := range r.Items {
		p.Items = append(p.Items, it.counter(nil))
	}
	return p, err
}

// Nodes returns GET /nodes as the server answered it: a node lists the
// members it sees, a gateway its backends (the two differ in shape).
func (c *Client) Nodes(ctx context.Context) (json.RawMessage, error) {
	var r json.RawMessage
	_, err := c.do(ctx, http.MethodGet, "/nodes", nil, "", &r)
	return r, err
}

// Health asks the first endpoint (only it: health is a property of one
// server) for GET /health and returns its answer, which is also returned,
// with ErrUnavailable, when the server says it is not healthy (503).
func (c *Client) Health(ctx context.Context) (json.RawMessage, error) {
	res := c.attempt(ctx, 0, http.MethodGet, "/health", nil, "")
	if res.err != nil {
		return res.body, res.err
	}
	return res.body, nil
}

type counterJSON struct {
	Key     string `json:"key"`
	Value   int64  `json:"value"`
	TTLMs   int64  `json:"ttl_ms"`
	Deleted *bool  `json:"deleted"`
}

func (r counterJSON) counter(h http.Header) Counter {
	return Counter{Key: r.Key, Value: r.Value, TTL: time.Duration(r.TTLMs) * time.Millisecond,
		Replayed: h != nil && h.Get("Idempotent-Replayed") == "true"}
}

func counterPath(key string) string { return "/counters/" + url.PathEscape(key) }

// NewIdempotencyKey returns a random key of 22 URL-safe characters.
func NewIdempotencyKey() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// write sends a write under an idempotency key (idem, or a new one).
func (c *Client) write(ctx context.Context, method, path string, body []byte, idem string, out any) (http.Header, error) {
	if idem == "" {
		k, err := NewIdempotencyKey()
		if err != nil {
			return nil, &Error{Kind: ErrUnavailable, Err: err}
		}
		idem = k
	}
	h, err := c.do(ctx, method, path, body, idem, out)
	var e *Error
	if errors.As(err, &e) {
		e.IdempotencyKey = idem
	}
	return h, err
}

// result is one attempt's outcome.
type result struct {
	header http.Header
	body   []byte
	err    *Error
	// sent: the request may have reached the server's handler, so its
	// effect is unknown unless an answer says otherwise.
	sent bool
	// failover: nothing happened; another endpoint may take it.
	failover bool
}

// do runs a request with failover; idem is "" for a read.
func (c *Client) do(ctx context.Context, method, path string, body []byte, idem string, out any) (http.Header, error) {
	var last *Error
	for _, i := range c.order() {
		res := c.attempt(ctx, i, method, path, body, idem)
		if res.err == nil {
			c.markUp(i)
			return res.header, decode(res, method, out)
		}
		last = res.err
		if res.sent && method != http.MethodGet {
			// The write may have been applied here, and only this node
			// knows its idempotency key: retry here or nowhere.
			return c.retrySame(ctx, i, res, method, path, body, idem, out)
		}
		if !res.failover {
			c.markUp(i) // it answered: it is up
			return res.header, res.err
		}
		if ctx.Err() != nil {
			break // our deadline, not the endpoint's fault
		}
		c.markDown(i)
	}
	if last.Kind != ErrUnavailable {
		last.Kind = ErrUnavailable
	}
	return nil, last
}

// retrySame retries a write of unknown outcome on endpoint i with the same
// idempotency key.
func (c *Client) retrySame(ctx context.Context, i int, res result, method, path string, body []byte, idem string, out any) (http.Header, error) {
	unknown := func(r result) error {
		e := r.err
		e.Kind = ErrOutcomeUnknown
		return e
	}
	if idem == "" {
		return nil, unknown(res)
	}
	pause := c.backoff
	for n := 1; n < c.attempts; n++ {
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, unknown(res)
		case <-t.C:
		}
		pause *= 2
		r := c.attempt(ctx, i, method, path, body, idem)
		if r.err == nil {
			c.markUp(i)
			return r.header, decode(r, method, out)
		}
		if !r.sent && !r.failover {
			return r.header, r.err // a definite answer (e.g. 422, 404)
		}
		res = r
	}
	return nil, unknown(res)
}

// decode reads a 2xx answer into out. An answer that cannot be read
// leaves a write's outcome unknown: it was taken, but with what result?
func decode(r result, method string, out any) error {
	if out == nil {
		return nil
	}
	if raw, ok := out.(*json.RawMessage); ok {
		*raw = append((*raw)[:0], r.body...)
		return nil
	}
	if err := json.Unmarshal(r.body, out); err != nil {
		kind := ErrUnavailable
		if method != http.MethodGet {
			kind = ErrOutcomeUnknown
		}
		return &Error{Kind: kind, Message: "unexpected answer from the server", Err: err}
	}
	return nil
}

// attempt sends one request to endpoint i.
func (c *Client) attempt(ctx context.Context, i int, method, path string, body []byte, idem string) result {
	ep := c.endpoints[i]
	var wrote bool
	var mu sync.Mutex
	trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) {
		mu.Lock()
		wrote = true
		mu.Unlock()
	}}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), method, ep+path, rd)
	if err != nil {
		return result{err: &Error{Kind: ErrBadRequest, Endpoint: ep, Err: err}}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if idem != "" {
		req.Header.Set("Idempotency-Key", idem)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		mu.Lock()
		sent := wrote
		mu.Unlock()
		// A read is safe to send anywhere again.
		return result{err: &Error{Kind: ErrUnavailable, Endpoint: ep, Err: err}, sent: sent, failover: !sent || method == http.MethodGet}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return result{err: &Error{Kind: ErrUnavailable, Endpoint: ep, StatusCode: resp.StatusCode, Err: err}, sent: true, failover: method == http.MethodGet}
	}
	res := result{header: resp.Header, body: b}
	if resp.StatusCode/100 == 2 {
		return res
	}
	var e struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(b, &e)
	res.err = &Error{Kind: kindOf(resp.StatusCode, e.Error), StatusCode: resp.StatusCode, Message: e.Error, Endpoint: ep}
	switch {
	case resp.StatusCode == http.StatusServiceUnavailable:
		res.failover = true // refused before anything happened
	case resp.StatusCode >= 500:
		res.sent = true // e.g. the log failed while writing: unknown
		res.err.Kind = ErrOutcomeUnknown
		if method == http.MethodGet {
			res.failover = true
		}
	}
	return res
}

func kindOf(status int, msg string) error {
	switch status {
	case http.StatusUnauthorized:
		return ErrUnauthorized
	case http.StatusForbidden:
		return ErrForbidden
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusServiceUnavailable:
		return ErrUnavailable
	}
	if status == http.StatusBadRequest && strings.Contains(msg, "overflow") {
		return ErrOverflow
	}
	if status >= 500 {
		return ErrOutcomeUnknown
	}
	return ErrBadRequest
}

// order lists the endpoints to try: the one that answered last first,
// then the others in turn, those that failed recently last.
func (c *Client) order() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	var up, down []int
	for k := range c.endpoints {
		i := (c.preferred + k) % len(c.endpoints)
		if t, ok := c.downUntil[i]; ok && now.Before(t) {
			down = append(down, i)
		} else {
			up = append(up, i)
		}
	}
	return append(up, down...)
}

func (c *Client) markUp(i int) {
	c.mu.Lock()
	c.preferred = i
	delete(c.downUntil, i)
	c.mu.Unlock()
}

func (c *Client) markDown(i int) {
	c.mu.Lock()
	c.downUntil[i] = c.now().Add(c.cooldown)
	c.mu.Unlock()
}
