// Package api serves dcounter's client HTTP API; nodes and the gateway
// serve the same routes over different backends.
//
//	GET    /counter                     value of key "default"
//	POST   /increment, /decrement       change "default" by {"amount":N} (no body: 1)
//	GET    /counters/{key}              value of a named key
//	POST   /counters/{key}/increment    change a named key; the body may also
//	POST   /counters/{key}/decrement    set its expiry (ttl_seconds or ttl_ms)
//	DELETE /counters/{key}              reset a key to 0 and unlist it everywhere
//	PUT    /counters/{key}/ttl          expire a live key {"seconds":N} from now
//	DELETE /counters/{key}/ttl          remove a live key's expiry
//	GET    /counters?prefix=&limit=&cursor=   a page of live keys, in byte order
//	GET    /nodes                       members as the backend sees them
//	GET    /health                      200 when serving, 503 when not
//	GET    /metrics                     Prometheus metrics
//
// A counter answer is {"key":K,"value":V} plus "ttl_ms" (milliseconds left,
// at least 1) when the key has an expiry. A key that is not live (never
// written, deleted, or expired) reads 200 with value 0 and no ttl_ms, like
// Redis's INCR over a missing key: the next increment counts from 0. Only
// the listing and PUT/DELETE .../ttl (404) tell a live 0 from an absent key.
//
// A listing's cursor is opaque to clients (it is the base64url of the last
// key visited, so that keys of any bytes survive a query string). A page
// may hold fewer than limit items, even none, and still have a "next":
// clients page until "next" is absent.
//
// With an Authenticator (Authorize), every route but /health needs a bearer
// token whose role allows it (RequiredRole): 401 without a valid one, 403
// when the role falls short. /health stays open, but tells an anonymous
// caller only whether the server is up.
//
// Keys are path segments: a key containing "/" (or any byte that is not safe
// in a path) must be percent-encoded. Every response is JSON; every error is
// {"error":"..."} with the status chosen by one table (service.HTTPStatus).
package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/dcounter/dcounter/internal/auth"
	"github.com/dcounter/dcounter/internal/crdt"
	"github.com/dcounter/dcounter/internal/service"
)

// MaxBody is the largest request body accepted.
const MaxBody = 64 << 10

// IdempotencyHeader names the header that makes a write retry-safe, and
// ReplayedHeader the one set on an answer replayed for a retry.
const (
	IdempotencyHeader = "Idempotency-Key"
	ReplayedHeader    = "Idempotent-Replayed"
)

// MaxListLimit bounds a page of GET /counters; DefaultListLimit is used
// when the request gives none.
const (
	MaxListLimit     = service.MaxListLimit
	DefaultListLimit = service.DefaultListLimit
)

// CounterResponse answers the routes that read or write one counter.
type CounterResponse struct {
	Key   string `json:"key"`
	Value int64  `json:"value"`
	// TTLMillis is the time left before the key expires, in milliseconds
	// (at least 1); absent when the key has no expiry.
	TTLMillis int64 `json:"ttl_ms,omitempty"`
}

// CounterOf returns c as the API answers it.
func CounterOf(c service.Counter) CounterResponse {
	r := CounterResponse{Key: c.Key, Value: c.Value}
	if c.TTL > 0 {
		// Rounded up: a key with any time left never reads as persistent.
		r.TTLMillis = int64((c.TTL + time.Millisecond - 1) / time.Millisecond)
	}
	return r
}

// DeleteResponse answers DELETE /counters/{key}. Deleted is false when the
// key was not live on the node that took the delete; the delete is recorded
// (and replicated) all the same.
type DeleteResponse struct {
	Key     string `json:"key"`
	Deleted bool   `json:"deleted"`
}

// ListResponse answers GET /counters. Next, when present, is the cursor of
// the following page.
type ListResponse struct {
	Items []CounterResponse `json:"items"`
	Next  string            `json:"next,omitempty"`
}

// ErrorResponse is the body of every error.
type ErrorResponse struct {
	Error string `json:"error"`
}

// Errors the handlers produce themselves, in the service's classes (so
// that one table, service.HTTPStatus, answers them).
var (
	ErrNotFound       = service.ErrNotFound
	ErrMethod         = service.WithClass(errors.New("method not allowed"), service.ClassMethod)
	ErrBodyTooLarge   = service.WithClass(fmt.Errorf("request body larger than %d bytes", MaxBody), service.ClassTooLarge)
	ErrBadJSON        = service.Invalid(errors.New("request body is not valid JSON of the form {\"amount\":N} (optionally with \"ttl_seconds\" or \"ttl_ms\", and \"ttl_mode\")"))
	ErrBadAmount      = service.Invalid(errors.New("amount must be a positive integer"))
	ErrAmountTooLarge = service.Invalid(errors.New("amount exceeds the int64 range"))
	// ErrBadTTLJSON is a PUT .../ttl body that is not {"seconds":N} or
	// {"milliseconds":N}.
	ErrBadTTLJSON = service.Invalid(errors.New("request body must be {\"seconds\":N} or {\"milliseconds\":N}"))
	ErrBadTTL     = service.Invalid(fmt.Errorf("a TTL must be a positive integer of at most %d seconds", int64(service.MaxTTL/time.Second)))
	ErrBadQuery   = service.Invalid(errors.New("bad query parameter"))
	ErrBadTTLMode = service.Invalid(errors.New(`ttl_mode must be "if_none" or "always"`))
	// ErrKeyNotFound answers a change of expiry for a key that is not
	// live: absent, deleted or expired.
	ErrKeyNotFound    = fmt.Errorf("key %w", ErrNotFound)
	ErrBadIdempotency = service.Invalid(fmt.Errorf("Idempotency-Key must be 1-%d printable ASCII characters", service.MaxIdempotencyKey))
	// ErrIdempotencyReused is returned when an Idempotency-Key comes back
	// with a different request than the one it was first used for.
	ErrIdempotencyReused = service.ErrIdempotencyReused
)

// Timeouts of a client API connection, for NewServer and the node's own
// listener (package httpserve): slow or idle clients cannot hold
// connections forever.
const (
	ReadTimeout  = 10 * time.Second
	WriteTimeout = 10 * time.Second
	IdleTimeout  = 2 * time.Minute
)

// NewServer returns an http.Server for h with timeouts suited to a public
// API: slow or idle clients cannot hold connections forever.
func NewServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    64 << 10,
	}
}

type handler struct {
	b       service.Service
	log     *slog.Logger
	metrics http.Handler
}

// NewHandler returns the client API over b; metrics, if not nil, serves
// GET /metrics.
func NewHandler(b service.Service, log *slog.Logger, metrics http.Handler) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &handler{b: b, log: log, metrics: metrics}
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := h.serve(w, r); err != nil {
		logFailure(h.log, r.Method, r.URL.Path, err)
		WriteError(w, err)
	}
}

// logFailure logs a request that failed for a reason of the service's own
// (ClassInternal); a client's mistake is the client's to see, not the log's.
func logFailure(log *slog.Logger, method, path string, err error) {
	if service.ClassOf(err) == service.ClassInternal {
		log.Error("request failed", "method", method, "path", path, "err", err)
	}
}

// WriteError answers with err's status from the one table and {"error":…}.
func WriteError(w http.ResponseWriter, err error) {
	writeBody(w, service.HTTPStatus(err), ErrorBody(err))
}

// WriteJSON answers with status and v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) { writeJSON(w, status, v) }

// RouteKind names a client API route.
type RouteKind int

// The client API's routes.
const (
	RouteGet RouteKind = iota + 1 // GET a counter's value
	RouteAdd                      // POST increment or decrement
	RouteNodes
	RouteHealth
	RouteMetrics
	RouteDelete // DELETE a counter
	RouteTTL    // PUT (set) or DELETE (remove) a counter's expiry
	RouteList   // GET a page of live keys
)

// Writes reports whether routes of kind k change counters: they need the
// write role, take an Idempotency-Key, and the gateway handles them as
// writes (never retried once they may have reached a node).
func (k RouteKind) Writes() bool { return k == RouteAdd || k == RouteDelete || k == RouteTTL }

// Route is a matched request: the route, and for counter routes the key
// (already validated) and the sign of the change.
type Route struct {
	Kind RouteKind
	Key  string
	Sign int64
}

// Match classifies r against the client API, checking the method (setting
// Allow on w when it is wrong) and the key. Errors carry their status.
func Match(w http.ResponseWriter, r *http.Request) (Route, error) {
	rt, allowed, err := MatchPath(r.Method, r.URL.EscapedPath())
	if allowed != nil {
		w.Header().Set("Allow", strings.Join(allowed, ", "))
	}
	return rt, err
}

// MatchPath is Match for a method and an escaped path (the request
// target's path, percent-escapes kept). On a wrong method it also returns
// the methods the route answers, for the Allow header.
func MatchPath(method, escapedPath string) (rt Route, allowed []string, err error) {
	var buf [4]string // every route has at most 3 segments
	segs, err := segments(buf[:0], escapedPath)
	if err != nil {
		return Route{}, nil, err
	}
	methods := methodsGet
	switch {
	case len(segs) == 1 && segs[0] == "counter":
		rt = Route{Kind: RouteGet, Key: crdt.DefaultKey}
	case len(segs) == 1 && segs[0] == "increment":
		rt, methods = Route{Kind: RouteAdd, Key: crdt.DefaultKey, Sign: 1}, methodsPost
	case len(segs) == 1 && segs[0] == "decrement":
		rt, methods = Route{Kind: RouteAdd, Key: crdt.DefaultKey, Sign: -1}, methodsPost
	case len(segs) == 1 && segs[0] == "counters":
		rt = Route{Kind: RouteList}
	case len(segs) == 2 && segs[0] == "counters":
		rt, methods = Route{Kind: RouteGet, Key: segs[1]}, methodsKey
	case len(segs) == 3 && segs[0] == "counters" && segs[2] == "increment":
		rt, methods = Route{Kind: RouteAdd, Key: segs[1], Sign: 1}, methodsPost
	case len(segs) == 3 && segs[0] == "counters" && segs[2] == "decrement":
		rt, methods = Route{Kind: RouteAdd, Key: segs[1], Sign: -1}, methodsPost
	case len(segs) == 3 && segs[0] == "counters" && segs[2] == "ttl":
		rt, methods = Route{Kind: RouteTTL, Key: segs[1]}, methodsTTL
	case len(segs) == 1 && segs[0] == "nodes":
		rt = Route{Kind: RouteNodes}
	case len(segs) == 1 && segs[0] == "health":
		rt = Route{Kind: RouteHealth}
	case len(segs) == 1 && segs[0] == "metrics":
		rt = Route{Kind: RouteMetrics}
	default:
		return Route{}, nil, fmt.Errorf("%w: %s", ErrNotFound, unescapedPath(escapedPath))
	}
	if !slices.Contains(methods, method) {
		return Route{}, methods, fmt.Errorf("%w: %s %s (use %s)", ErrMethod, method, unescapedPath(escapedPath), strings.Join(methods, ", "))
	}
	if rt.Kind == RouteGet && method == http.MethodDelete {
		rt.Kind = RouteDelete
	}
	switch rt.Kind {
	case RouteGet, RouteAdd, RouteDelete, RouteTTL:
		if err := crdt.ValidKey(rt.Key); err != nil {
			return Route{}, nil, err
		}
	}
	return rt, nil, nil
}

// unescapedPath is the path errors name, as net/http's URL.Path spells it.
func unescapedPath(escaped string) string {
	if p, err := url.PathUnescape(escaped); err == nil {
		return p
	}
	return escaped
}

// The methods each route answers, as its Allow header lists them.
var (
	methodsGet  = []string{http.MethodGet, http.MethodHead}
	methodsPost = []string{http.MethodPost}
	methodsKey  = []string{http.MethodGet, http.MethodHead, http.MethodDelete}
	methodsTTL  = []string{http.MethodPut, http.MethodDelete}
)

func (h *handler) serve(w http.ResponseWriter, r *http.Request) error {
	rt, err := Match(w, r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	switch rt.Kind {
	case RouteGet:
		c, err := h.b.Get(ctx, rt.Key)
		if err != nil {
			return err
		}
		writeCounter(w, rt.Key, c, false)
	case RouteAdd:
		wr := WriteRequest{Amount: 1} // no body: an amount of 1
		if r.Body != nil && r.Body != http.NoBody {
			if wr, err = ParseWrite(http.MaxBytesReader(w, r.Body, MaxBody)); err != nil {
				return err
			}
		}
		idem, err := IdempotencyKey(r)
		if err != nil {
			return err
		}
		c, replayed, err := h.b.Add(ctx, rt.Key, rt.Sign*wr.Amount, wr.Options(idem))
		if err != nil {
			return err
		}
		writeCounter(w, rt.Key, c, replayed)
	case RouteDelete:
		idem, err := IdempotencyKey(r)
		if err != nil {
			return err
		}
		existed, replayed, err := h.b.Delete(ctx, rt.Key, idem)
		if err != nil {
			return err
		}
		if replayed {
			w.Header().Set(ReplayedHeader, "true")
		}
		writeJSON(w, http.StatusOK, DeleteResponse{Key: rt.Key, Deleted: existed})
	case RouteTTL:
		var ttl time.Duration // DELETE: remove the expiry
		if r.Method == http.MethodPut {
			if ttl, err = ParseTTL(http.MaxBytesReader(w, r.Body, MaxBody)); err != nil {
				return err
			}
		}
		idem, err := IdempotencyKey(r)
		if err != nil {
			return err
		}
		c, replayed, err := h.b.SetTTL(ctx, rt.Key, ttl, idem)
		if errors.Is(err, ErrNotFound) {
			return ErrKeyNotFound
		}
		if err != nil {
			return err
		}
		writeCounter(w, rt.Key, c, replayed)
	case RouteList:
		req, err := ParseListQuery(r.URL.RawQuery)
		if err != nil {
			return err
		}
		page, err := h.b.List(ctx, req)
		if err != nil {
			return err
		}
		resp := ListResponse{Items: make([]CounterResponse, 0, len(page.Items))}
		for _, c := range page.Items {
			resp.Items = append(resp.Items, CounterOf(c))
		}
		if page.Next != "" {
			resp.Next = EncodeCursor(page.Next)
		}
		writeJSON(w, http.StatusOK, resp)
	case RouteNodes:
		nodes, err := h.b.Nodes(ctx)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, nodes)
	case RouteHealth:
		ok, body := h.b.Health(ctx)
		status := http.StatusOK
		if !ok {
			status = http.StatusServiceUnavailable
		}
		writeJSON(w, status, HealthFor(ctx, ok, body))
	case RouteMetrics:
		if h.metrics == nil {
			return fmt.Errorf("%w: /metrics", ErrNotFound)
		}
		h.metrics.ServeHTTP(w, r)
	}
	return nil
}

// writeCounter answers with c under the key the client asked for. It is
// the answer to every read and write of a counter, so it encodes by hand
// what writeJSON would (appendCounter) into a pooled buffer.
func writeCounter(w http.ResponseWriter, key string, c service.Counter, replayed bool) {
	h := w.Header()
	if replayed {
		h[ReplayedHeader] = headerTrue
	}
	bp := bufs.Get().(*[]byte)
	b := appendCounterOf((*bp)[:0], key, c)
	setJSONHeaders(h, len(b))
	w.WriteHeader(http.StatusOK)
	w.Write(b)
	if cap(b) <= 4<<10 {
		*bp = b
		bufs.Put(bp)
	}
}

// appendCounterOf appends the body that answers with counter c of key.
func appendCounterOf(b []byte, key string, c service.Counter) []byte {
	resp := CounterOf(c)
	resp.Key = key
	return appendCounter(b, &resp)
}

// bufs holds the buffers writeCounter encodes into.
var bufs = sync.Pool{New: func() any { b := make([]byte, 0, 128); return &b }}

// Header values set without allocating. Header maps own their values'
// slices only as far as Set and Add go, which replace or append (a
// full slice reallocates); nothing writes into one in place.
var (
	headerJSON = []string{"application/json"}
	headerTrue = []string{"true"}
	// headerLens[n] is the Content-Length value n, for small answers.
	headerLens = func() (l [256][]string) {
		for i := range l {
			l[i] = []string{strconv.Itoa(i)}
		}
		return l
	}()
)

// setJSONHeaders sets the Content-Type and Content-Length of a JSON
// answer of n bytes.
func setJSONHeaders(h http.Header, n int) {
	h["Content-Type"] = headerJSON
	if n < len(headerLens) {
		h["Content-Length"] = headerLens[n]
	} else {
		h["Content-Length"] = []string{strconv.Itoa(n)}
	}
}

// appendCounter appends r as json.Marshal encodes it, and a newline.
func appendCounter(b []byte, r *CounterResponse) []byte {
	b = append(b, `{"key":`...)
	b = appendJSONString(b, r.Key)
	b = append(b, `,"value":`...)
	b = strconv.AppendInt(b, r.Value, 10)
	if r.TTLMillis != 0 {
		b = append(b, `,"ttl_ms":`...)
		b = strconv.AppendInt(b, r.TTLMillis, 10)
	}
	return append(b, "}\n"...)
}

// appendJSONString appends s as json.Marshal encodes a string: a key of
// printable ASCII that needs no escape is copied, any other goes through
// encoding/json (HTML-safe escapes, invalid UTF-8 replaced).
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// segments splits the escaped path and unescapes each segment, so that a
// percent-encoded "/" stays inside its key, appending them to parts.
func segments(parts []string, escapedPath string) ([]string, error) {
	p := strings.TrimPrefix(escapedPath, "/")
	if p == "" {
		return nil, fmt.Errorf("%w: /", ErrNotFound)
	}
	for {
		s, rest, more := strings.Cut(p, "/")
		us, err := url.PathUnescape(s) // s itself when it holds no escape
		if err != nil {
			return nil, fmt.Errorf("%w: bad escape in path", crdt.ErrBadKey)
		}
		parts = append(parts, us)
		if !more {
			return parts, nil
		}
		p = rest
	}
}

// IdempotencyKey returns the request's Idempotency-Key ("" if none),
// refusing one that is too long or not printable ASCII.
func IdempotencyKey(r *http.Request) (string, error) {
	k := r.Header.Get(IdempotencyHeader)
	return k, CheckIdempotencyKey(k)
}

// CheckIdempotencyKey refuses an Idempotency-Key that is too long or not
// printable ASCII; "" (none) passes.
func CheckIdempotencyKey(k string) error {
	if len(k) > service.MaxIdempotencyKey {
		return ErrBadIdempotency
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return ErrBadIdempotency
		}
	}
	return nil
}

// WriteRequest is the body of an increment or decrement.
type WriteRequest struct {
	Amount    int64         // positive
	TTL       time.Duration // 0: the write sets no expiry
	TTLAlways bool          // "ttl_mode":"always"
}

// Options are the service's options for the write, under Idempotency-Key
// idem ("" if none).
func (wr WriteRequest) Options(idem string) service.WriteOptions {
	return service.WriteOptions{Idem: idem, TTL: wr.TTL, TTLAlways: wr.TTLAlways}
}

// ParseWrite reads an increment's or decrement's body: empty (or only white
// space) or {} means an amount of 1; otherwise exactly one JSON object
// {"amount":N, "ttl_seconds":S | "ttl_ms":M, "ttl_mode":"if_none"|"always"},
// every field optional, with N, S and M positive integers written without
// sign, fraction, exponent or quotes. ttl_mode needs a TTL and defaults to
// if_none.
func ParseWrite(body io.Reader) (WriteRequest, error) {
	bp := bufs.Get().(*[]byte)
	b, err := readBody((*bp)[:0], body, ErrBadJSON)
	defer func() {
		if cap(b) <= 4<<10 {
			*bp = b[:0]
			bufs.Put(bp)
		}
	}()
	if err != nil {
		return WriteRequest{Amount: 1}, err
	}
	return ParseWriteBody(b)
}

// ParseWriteBody is ParseWrite for a body already read (at most MaxBody
// bytes); it keeps no reference to b.
func ParseWriteBody(b []byte) (WriteRequest, error) {
	if wr, ok := quickWrite(b); ok {
		return wr, nil
	}
	return decodeWrite(b)
}

// decodeWrite is ParseWriteBody through encoding/json: every body, with
// an error that says what is wrong.
func decodeWrite(b []byte) (WriteRequest, error) {
	wr := WriteRequest{Amount: 1}
	var req struct {
		Amount     json.RawMessage `json:"amount"`
		TTLSeconds json.RawMessage `json:"ttl_seconds"`
		TTLMillis  json.RawMessage `json:"ttl_ms"`
		TTLMode    json.RawMessage `json:"ttl_mode"`
	}
	empty, err := decodeBytes(b, &req, ErrBadJSON)
	if err != nil || empty {
		return wr, err
	}
	if req.Amount != nil {
		n, err := parseCount(req.Amount)
		switch {
		case errors.Is(err, strconv.ErrRange) || n > math.MaxInt64:
			return wr, fmt.Errorf("%w: %s", ErrAmountTooLarge, req.Amount)
		case err != nil || n == 0:
			return wr, fmt.Errorf("%w, got %s", ErrBadAmount, req.Amount)
		}
		wr.Amount = int64(n)
	}
	if wr.TTL, err = parseTTLFields("ttl_seconds", req.TTLSeconds, "ttl_ms", req.TTLMillis); err != nil {
		return wr, err
	}
	if req.TTLMode != nil {
		var mode string
		var ok bool
		if json.Unmarshal(req.TTLMode, &mode) != nil {
			return wr, fmt.Errorf("%w, got %s", ErrBadTTLMode, req.TTLMode)
		}
		if wr.TTLAlways, ok = ttlMode(mode); !ok {
			return wr, fmt.Errorf("%w, got %s", ErrBadTTLMode, req.TTLMode)
		}
		if wr.TTL == 0 {
			return wr, fmt.Errorf("%w: ttl_mode without ttl_seconds or ttl_ms", ErrBadTTLMode)
		}
	}
	return wr, nil
}

// ParseTTL reads a PUT .../ttl body: exactly one JSON object with exactly
// one of {"seconds":N} or {"milliseconds":N}, N a positive integer (as
// ParseWrite's amount) of at most MaxTTL.
func ParseTTL(body io.Reader) (time.Duration, error) {
	var req struct {
		Seconds json.RawMessage `json:"seconds"`
		Millis  json.RawMessage `json:"milliseconds"`
	}
	empty, err := decodeObject(body, &req, ErrBadTTLJSON)
	if err != nil {
		return 0, err
	}
	if empty || (req.Seconds == nil && req.Millis == nil) {
		return 0, fmt.Errorf("%w: no TTL given", ErrBadTTLJSON)
	}
	return parseTTLFields("seconds", req.Seconds, "milliseconds", req.Millis)
}

// parseTTLFields reads a TTL given in seconds or in milliseconds, not both;
// 0 if neither.
func parseTTLFields(secName string, sec json.RawMessage, msName string, ms json.RawMessage) (time.Duration, error) {
	if sec != nil && ms != nil {
		return 0, fmt.Errorf("%w: give %s or %s, not both", ErrBadTTL, secName, msName)
	}
	raw, unit, name := sec, time.Second, secName
	if ms != nil {
		raw, unit, name = ms, time.Millisecond, msName
	}
	if raw == nil {
		return 0, nil
	}
	n, err := parseCount(raw)
	ttl, ok := ttlOf(n, unit)
	if err != nil || !ok {
		return 0, fmt.Errorf("%w; %s is %s", ErrBadTTL, name, raw)
	}
	return ttl, nil
}

// ttlOf is n units as a TTL, if that is one: positive and at most MaxTTL.
func ttlOf(n uint64, unit time.Duration) (time.Duration, bool) {
	if n == 0 || n > uint64(service.MaxTTL/unit) {
		return 0, false
	}
	return time.Duration(n) * unit, true
}

// ttlMode reads a ttl_mode: always reports "always"; ok is false for
// anything but "if_none" and "always".
func ttlMode(mode string) (always, ok bool) {
	return mode == "always", mode == "always" || mode == "if_none"
}

// decodeObject reads body into v, which must be exactly one JSON object
// with no unknown fields; empty reports a body of only white space (v
// untouched). Syntax errors wrap bad.
func decodeObject(body io.Reader, v any, bad error) (empty bool, err error) {
	b, err := readBody(nil, body, bad)
	if err != nil {
		return false, err
	}
	return decodeBytes(b, v, bad)
}

// readBody appends body to b; a read error wraps bad, or is
// ErrBodyTooLarge past an http.MaxBytesReader's limit.
func readBody(b []byte, body io.Reader, bad error) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := body.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return b, ErrBodyTooLarge
			}
			return b, fmt.Errorf("%w: %v", bad, err)
		}
	}
}

// quickWrite reads the bodies nearly every write sends without
// encoding/json: one flat object whose members are "amount", "ttl_seconds"
// or "ttl_ms", and "ttl_mode", each at most once, the numbers in plain
// digits and the mode without escapes, with JSON white space around the
// tokens. ok is false for any other body, and for any body ParseWriteBody
// refuses: decodeWrite then reads it, and says what is wrong.
func quickWrite(b []byte) (wr WriteRequest, ok bool) {
	b, ok = bytes.CutPrefix(skipJSONSpace(b), []byte("{"))
	if !ok {
		return wr, false
	}
	var (
		amount, sec, ms int64 // 0: absent
		mode            []byte
	)
	b = skipJSONSpace(b)
	for len(b) > 0 && b[0] == '"' {
		var name, value []byte
		if name, b, ok = quickString(b); !ok {
			return wr, false
		}
		if b, ok = bytes.CutPrefix(skipJSONSpace(b), []byte(":")); !ok {
			return wr, false
		}
		b = skipJSONSpace(b)
		var field *int64
		switch string(name) {
		case "ttl_mode":
			if mode != nil {
				return wr, false
			}
			if value, b, ok = quickString(b); !ok {
				return wr, false
			}
			mode = value
		case "amount":
			field = &amount
		case "ttl_seconds":
			field = &sec
		case "ttl_ms":
			field = &ms
		default:
			return wr, false
		}
		if field != nil {
			if *field != 0 {
				return wr, false // twice
			}
			if *field, b, ok = quickCount(b); !ok {
				return wr, false
			}
		}
		b = skipJSONSpace(b)
		if len(b) == 0 || b[0] != ',' {
			break // the object must end here
		}
		b = skipJSONSpace(b[1:])
		if len(b) == 0 || b[0] != '"' {
			return wr, false
		}
	}
	if b, ok = bytes.CutPrefix(b, []byte("}")); !ok || len(skipJSONSpace(b)) != 0 {
		return wr, false
	}
	wr.Amount = 1
	if amount != 0 {
		wr.Amount = amount
	}
	n, unit := sec, time.Second
	if ms != 0 {
		if sec != 0 {
			return wr, false
		}
		n, unit = ms, time.Millisecond
	}
	if n != 0 {
		if wr.TTL, ok = ttlOf(uint64(n), unit); !ok {
			return wr, false
		}
	}
	if mode != nil {
		if wr.TTLAlways, ok = ttlMode(string(mode)); !ok || wr.TTL == 0 {
			return wr, false
		}
	}
	return wr, true
}

// quickString reads a JSON string of letters and underscores that b
// starts with, returning its contents and what follows.
func quickString(b []byte) (s, rest []byte, ok bool) {
	if len(b) == 0 || b[0] != '"' {
		return nil, b, false
	}
	for i := 1; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return b[1:i], b[i+1:], true
		case c != '_' && (c < 'a' || c > 'z'):
			return nil, b, false
		}
	}
	return nil, b, false
}

// quickCount reads the positive integer in plain digits (no sign, leading
// zero, fraction or exponent) of at most int64 that b starts with.
func quickCount(b []byte) (n int64, rest []byte, ok bool) {
	i := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	if i == 0 || i > 19 || b[0] == '0' {
		return 0, b, false // none, too many, or a leading zero (or 0 itself)
	}
	if i < len(b) && (b[i] == '.' || b[i] == 'e' || b[i] == 'E') {
		return 0, b, false
	}
	for _, c := range b[:i] {
		n = n*10 + int64(c-'0')
		if n < 0 {
			return 0, b, false // beyond int64
		}
	}
	return n, b[i:], true
}

// skipJSONSpace drops the JSON white space b starts with.
func skipJSONSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\n' || b[0] == '\r') {
		b = b[1:]
	}
	return b
}

// decodeBytes is decodeObject for a body already read.
func decodeBytes(b []byte, v any, bad error) (empty bool, err error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return true, nil
	}
	if b[0] != '{' {
		return false, fmt.Errorf("%w: want a JSON object", bad)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return false, fmt.Errorf("%w: %v", bad, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return false, fmt.Errorf("%w: trailing data after the object", bad)
	}
	return false, nil
}

// parseCount reads a JSON number token that must be a non-negative integer
// in plain digits: the raw token, so that "5" (a string), 1.5, 1e3, -1 and
// null are refused rather than coerced. Beyond uint64 it returns
// strconv.ErrRange.
func parseCount(raw json.RawMessage) (uint64, error) {
	s := string(raw)
	if s == "" {
		return 0, strconv.ErrSyntax
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, strconv.ErrSyntax
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, strconv.ErrRange // digits only: the only way to fail
	}
	return n, nil
}

// ParseListQuery reads GET /counters's query: prefix (any key prefix),
// limit (1..MaxListLimit, default DefaultListLimit) and cursor (a previous
// page's next). Other parameters, and any given twice, are refused.
func ParseListQuery(rawQuery string) (service.ListRequest, error) {
	req := service.ListRequest{Limit: DefaultListLimit}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return req, fmt.Errorf("%w: %v", ErrBadQuery, err)
	}
	for name, vs := range q {
		if len(vs) > 1 {
			return req, fmt.Errorf("%w: %s given %d times", ErrBadQuery, name, len(vs))
		}
		v := vs[0]
		switch name {
		case "prefix":
			if len(v) > crdt.MaxKeyLen || !utf8.ValidString(v) {
				return req, fmt.Errorf("%w: prefix must be at most %d bytes of valid UTF-8", ErrBadQuery, crdt.MaxKeyLen)
			}
			req.Prefix = v
		case "limit":
			n, err := parseCount(json.RawMessage(v))
			if err != nil || n == 0 || n > MaxListLimit {
				return req, fmt.Errorf("%w: limit must be an integer from 1 to %d, got %q", ErrBadQuery, MaxListLimit, v)
			}
			req.Limit = int(n)
		case "cursor":
			if v == "" {
				continue // as if absent: the first page
			}
			k, err := DecodeCursor(v)
			if err != nil {
				return req, err
			}
			req.Cursor = k
		default:
			return req, fmt.Errorf("%w: unknown parameter %q (want prefix, limit, cursor)", ErrBadQuery, name)
		}
	}
	return req, nil
}

// EncodeCursor turns the key a page ended at into the cursor clients see.
func EncodeCursor(key string) string { return base64.RawURLEncoding.EncodeToString([]byte(key)) }

// DecodeCursor is EncodeCursor's inverse; it refuses anything that is not
// the cursor of some key.
func DecodeCursor(c string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || crdt.ValidKey(string(b)) != nil {
		return "", fmt.Errorf("%w: cursor is not one this API returned", ErrBadQuery)
	}
	return string(b), nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	writeBody(w, status, append(b, '\n'))
}

// writeBody answers with status and the JSON body b.
func writeBody(w http.ResponseWriter, status int, b []byte) {
	setJSONHeaders(w.Header(), len(b))
	w.WriteHeader(status)
	w.Write(b)
}

// Authenticator tells who sent a request. body is the request's body when
// it carries forwarded-identity headers (auth.Forwarded), else nil.
type Authenticator interface {
	Authenticate(r *http.Request, body []byte) (auth.Identity, error)
}

var _ Authenticator = (*auth.Guard)(nil)

// RequiredRole is the least role a route needs. /health needs none.
func RequiredRole(k RouteKind) auth.Role {
	switch k {
	case RouteHealth:
		return auth.RoleNone
	case RouteGet, RouteList:
		return auth.RoleRead
	case RouteAdd, RouteDelete, RouteTTL:
		return auth.RoleWrite
	}
	return auth.RoleAdmin // /nodes, /metrics: the cluster's layout and internals
}

// PublicHealth is /health's answer to a caller that did not authenticate.
type PublicHealth struct {
	Status string `json:"status"` // "ok" or "unavailable"
}

// HealthFor returns the /health body for the caller in ctx: body itself,
// unless Authorize found the caller anonymous.
func HealthFor(ctx context.Context, ok bool, body any) any {
	if id, found := auth.FromContext(ctx); found && id.Role == auth.RoleNone {
		if ok {
			return PublicHealth{Status: "ok"}
		}
		return PublicHealth{Status: "unavailable"}
	}
	return body
}

// Authorize wraps next (the client API) so that every request is
// authenticated by a and allowed by its role before next sees it; next finds
// the caller with auth.FromContext. Unknown routes and wrong methods are
// answered 404/405 only to an authenticated caller, so that an anonymous one
// learns nothing but 401.
func Authorize(next http.Handler, a Authenticator) http.Handler {
	return &authorizer{next: next, a: a}
}

type authorizer struct {
	next http.Handler
	a    Authenticator
}

func (z *authorizer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body []byte
	if auth.Forwarded(r.Header) && r.Body != nil {
		// The forwarded identity's MAC covers the body, so read it first
		// (bounded as the handlers would) and hand next a copy.
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				err = ErrBodyTooLarge
			} else {
				err = fmt.Errorf("%w: %v", ErrBadJSON, err)
			}
			WriteError(w, err)
			return
		}
		body = b
		r.Body = io.NopCloser(bytes.NewReader(b))
	}
	rt, matchErr := Match(discardHeaders{}, r)
	id, err := z.a.Authenticate(r, body)
	if matchErr == nil && rt.Kind == RouteHealth {
		if err != nil {
			id = auth.Identity{} // anonymous: the short answer
		}
		z.next.ServeHTTP(w, r.WithContext(auth.NewContext(r.Context(), id)))
		return
	}
	if err != nil {
		challenge := `Bearer realm="dcounter"`
		if r.Header.Get("Authorization") != "" {
			challenge += `, error="invalid_token"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
		WriteError(w, err)
		return
	}
	if matchErr == nil {
		if need := RequiredRole(rt.Kind); !id.Role.Allows(need) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="dcounter", error="insufficient_scope"`)
			WriteError(w, fmt.Errorf("%w: %s %s needs the %s role; this token has %s", auth.ErrForbidden, r.Method, r.URL.Path, need, id.Role))
			return
		}
	}
	// On a match error next answers it (404, 405 with Allow, 400).
	z.next.ServeHTTP(w, r.WithContext(auth.NewContext(r.Context(), id)))
}

// discardHeaders lets Authorize run Match without writing its Allow header
// twice.
type discardHeaders struct{}

func (discardHeaders) Header() http.Header         { return http.Header{} }
func (discardHeaders) Write(b []byte) (int, error) { return len(b), nil }
func (discardHeaders) WriteHeader(int)             {}
