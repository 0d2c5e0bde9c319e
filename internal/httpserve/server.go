// Package httpserve serves a node's client API over HTTP/1.1 with fasthttp.
//
// net/http's server costs a dcounter node more CPU per request than
// everything else a write does when its log is not synced; fasthttp
// reads and answers a request with a fraction of that. The counter reads
// and writes that are nearly all of the traffic are answered by
// api.Quick straight from fasthttp's request; every other request, and
// every request Quick declines, is handed to the full net/http handler,
// through a bridge that copies what it needs out of fasthttp's buffers
// (which are reused once the request is answered).
package httpserve

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/valyala/fasthttp"

	"github.com/dcounter/dcounter/internal/api"
	"github.com/dcounter/dcounter/internal/auth"
	"github.com/dcounter/dcounter/internal/service"
)

// MaxHeader bounds a request's line and headers together. The timeouts
// are api.NewServer's (api.ReadTimeout, WriteTimeout, IdleTimeout).
const MaxHeader = 8 << 10

// Config says what a Server serves.
type Config struct {
	// Handler answers every request Quick does not: the full client API.
	Handler http.Handler
	// Quick, if set, answers first what it can.
	Quick *api.Quick
	// Open, if set, is asked before Quick: false sends every request to
	// Handler (a draining node's Handler refuses them).
	Open func() bool
	// Log gets malformed requests and failed connections at debug level
	// (anyone can cause them) and handler panics at error level.
	Log *slog.Logger
}

// Server is an HTTP/1.1 server for the client API.
type Server struct {
	cfg Config
	fs  *fasthttp.Server

	mu sync.Mutex
	ln net.Listener // the one Serve serves, once it has begun
	// stopping is set (under mu) once Shutdown has begun: from then on
	// every request is refused (503, Connection: close), even on a
	// connection fasthttp keeps serving after a Shutdown that timed out.
	stopping atomic.Bool
}

// New returns a Server for cfg.
func New(cfg Config) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg}
	s.fs = &fasthttp.Server{
		Handler:                      s.serve,
		ErrorHandler:                 s.malformed,
		ReadTimeout:                  api.ReadTimeout,
		WriteTimeout:                 api.WriteTimeout,
		IdleTimeout:                  api.IdleTimeout,
		ReadBufferSize:               MaxHeader,
		MaxRequestBodySize:           api.MaxBody,
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		DisablePreParseMultipartForm: true,
		SecureErrorLogMessage:        true,
		CloseOnShutdown:              true,
		Logger:                       debugLogger{cfg.Log},
	}
	return s
}

// Serve serves connections from ln until Shutdown; it then returns nil,
// also when Shutdown came first.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.stopping.Load() {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.ln = ln
	s.mu.Unlock()
	err := s.fs.Serve(ln)
	if s.stopping.Load() {
		return nil // the listener closed under Accept
	}
	return err
}

// Shutdown stops accepting connections, closes idle ones, and waits for
// requests in flight to be answered, or for ctx to end. Requests that
// arrive after it began are refused.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.stopping.Store(true)
	ln := s.ln
	s.mu.Unlock()
	err := s.fs.ShutdownWithContext(ctx)
	if ln != nil {
		// fasthttp closes only a listener it had registered by the time
		// Shutdown began.
		ln.Close()
	}
	return err
}

var (
	headerReplayed = []byte(api.ReplayedHeader)
	valueTrue      = []byte("true")
	contentJSON    = []byte("application/json")
)

// method returns m as a string, without allocating for the methods of
// the routes Quick answers.
func method(m []byte) string {
	switch string(m) {
	case http.MethodGet:
		return http.MethodGet
	case http.MethodPost:
		return http.MethodPost
	}
	return string(m)
}

func (s *Server) serve(ctx *fasthttp.RequestCtx) {
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				s.cfg.Log.Error("panic serving a request", "method", string(ctx.Method()), "path", string(ctx.Path()), "panic", p)
			}
			// As net/http does: no answer, the connection closed.
			ctx.Response.Reset()
			ctx.SetConnectionClose()
			ctx.HijackSetNoResponse(true)
			ctx.Hijack(func(net.Conn) {})
		}
	}()
	if s.stopping.Load() {
		refuse(ctx, http.StatusServiceUnavailable, errShuttingDown)
		return
	}
	if s.cfg.Quick != nil && (s.cfg.Open == nil || s.cfg.Open()) && s.quick(ctx) {
		return
	}
	s.bridge(ctx)
}

// errShuttingDown answers a request that comes after Shutdown began:
// certainly not applied.
var errShuttingDown = service.Unavailable(errors.New("server shutting down: try another node"))

// quick answers ctx with Quick, if it will.
func (s *Server) quick(ctx *fasthttp.RequestCtx) bool {
	target := ctx.Request.Header.RequestURI()
	if len(target) == 0 || target[0] != '/' {
		return false // absolute or asterisk form: net/http's reading
	}
	h := &ctx.Request.Header
	path := target
	if i := bytes.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	if !validEncoded(path) {
		// net/http re-escapes such a path (URL.EscapedPath), which can
		// change its segments: the handler reads it.
		return false
	}
	// string(...) copies: the request's buffers are reused once answered.
	r := api.QuickRequest{
		Method: method(h.Method()),
		Path:   string(path),
		Body:   ctx.Request.Body(),
	}
	// The header section only, first value of each, as net/http's
	// Header.Get reads it: never a chunked body's trailer fields.
	var authz, idem []byte
	for k, v := range h.All() {
		switch {
		case string(k) == fasthttp.HeaderAuthorization:
			if authz == nil {
				authz = v
			}
		case string(k) == api.IdempotencyHeader:
			if idem == nil {
				idem = v
			}
		case isForwarded(k):
			r.Forwarded = true
		}
	}
	r.Authorization, r.Idempotency = string(authz), string(idem)
	// The answer is written into the response's own body buffer.
	buf := ctx.Response.SwapBody(nil)[:0]
	a, ok := s.cfg.Quick.Answer(context.Background(), &r, buf)
	if !ok {
		ctx.Response.SwapBody(buf)
		return false
	}
	answer(ctx, a.Status, a.Body)
	if a.Replayed {
		ctx.Response.Header.SetBytesKV(headerReplayed, valueTrue)
	}
	return true
}

// answer answers ctx with status and the JSON body b, which the response
// owns from now on.
func answer(ctx *fasthttp.RequestCtx, status int, b []byte) {
	ctx.Response.SetStatusCode(status)
	ctx.Response.Header.SetContentTypeBytes(contentJSON)
	ctx.Response.SwapBody(b)
}

// refuse answers ctx with err's JSON body under status, and closes the
// connection.
func refuse(ctx *fasthttp.RequestCtx, status int, err error) {
	ctx.Response.Reset()
	ctx.SetConnectionClose()
	answer(ctx, status, api.ErrorBody(err))
}

// isForwarded reports whether a header name is one of a gateway's
// forwarded-identity headers.
func isForwarded(k []byte) bool {
	for _, f := range auth.ForwardedHeaders {
		if string(k) == f { // compared, not converted: no allocation
			return true
		}
	}
	return false
}

// validEncoded reports whether path is already in the form net/http's
// URL.EscapedPath keeps as sent: only bytes a path may carry unescaped,
// and escapes. The escapes themselves are checked when unescaped.
func validEncoded(path []byte) bool {
	for _, c := range path {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-_.~!$&'()*+,;=:@/%[]", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// malformed answers a request fasthttp could not read, as JSON.
func (s *Server) malformed(ctx *fasthttp.RequestCtx, err error) {
	var (
		status = http.StatusBadRequest
		e      = service.Invalid(errors.New("malformed HTTP request"))
		small  *fasthttp.ErrSmallBuffer
		ne     net.Error
	)
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		status, e = http.StatusRequestEntityTooLarge, api.ErrBodyTooLarge
	case errors.As(err, &small):
		status, e = http.StatusRequestHeaderFieldsTooLarge, fmt.Errorf("request line and headers larger than %d bytes", MaxHeader)
	case errors.As(err, &ne) && ne.Timeout():
		status, e = http.StatusRequestTimeout, errors.New("request not received in time")
	}
	if s.cfg.Log.Enabled(context.Background(), slog.LevelDebug) {
		s.cfg.Log.Debug("malformed request", "remote", ctx.RemoteAddr().String(), "err", err)
	}
	refuse(ctx, status, e)
}

// debugLogger is fasthttp's logger: what it reports is anyone's to cause.
type debugLogger struct{ log *slog.Logger }

func (l debugLogger) Printf(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug(fmt.Sprintf(format, args...))
	}
}

// bridge serves ctx with the net/http Handler.
func (s *Server) bridge(ctx *fasthttp.RequestCtx) {
	r, err := request(ctx)
	if err != nil {
		s.malformed(ctx, err)
		return
	}
	w := &response{ctx: ctx, header: make(http.Header), head: r.Method == http.MethodHead}
	s.cfg.Handler.ServeHTTP(w, r)
	w.commit(nil)
}

// request builds the net/http request for ctx. Every string is a copy.
func request(ctx *fasthttp.RequestCtx) (*http.Request, error) {
	uri := string(ctx.Request.Header.RequestURI())
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		return nil, err
	}
	h := &ctx.Request.Header
	r := &http.Request{
		Method:     string(h.Method()),
		URL:        u,
		RequestURI: uri,
		Proto:      "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:     make(http.Header),
		Host:       string(h.Host()),
		RemoteAddr: ctx.RemoteAddr().String(),
		TLS:        ctx.TLSConnectionState(),
	}
	if !h.IsHTTP11() {
		r.Proto, r.ProtoMinor = "HTTP/1.0", 0
	}
	for k, v := range h.All() {
		r.Header.Add(string(k), string(v))
	}
	// As net/http: the host is r.Host, and the body arrives de-chunked,
	// without trailers.
	r.Header.Del("Host")
	r.Header.Del("Transfer-Encoding")
	r.Header.Del("Trailer")
	body := bytes.Clone(ctx.Request.Body())
	r.ContentLength = int64(len(body))
	r.Body = io.NopCloser(bytes.NewReader(body))
	// The address the connection came in on, as net/http gives it: a
	// membership proof accepts it as the node's own.
	return r.WithContext(context.WithValue(context.Background(), http.LocalAddrContextKey, ctx.LocalAddr())), nil
}

// response is the http.ResponseWriter of a bridged request. As net/http's,
// it sends the header with the first body bytes (or at the end), so that
// a Content-Type can still be sniffed from them.
type response struct {
	ctx       *fasthttp.RequestCtx
	header    http.Header
	status    int // 0: not yet chosen
	committed bool
	head      bool // a HEAD request: no body, but the handler's Content-Length
}

func (w *response) Header() http.Header { return w.header }

func (w *response) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *response) Write(b []byte) (int, error) {
	w.commit(b)
	return w.ctx.Write(b)
}

// commit copies the status and header to fasthttp's response; first is
// the body's first bytes, for sniffing.
func (w *response) commit(first []byte) {
	if w.committed {
		return
	}
	w.committed = true
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if _, ok := w.header["Content-Type"]; !ok && len(first) > 0 {
		w.header.Set("Content-Type", http.DetectContentType(first))
	}
	rh := &w.ctx.Response.Header
	w.ctx.Response.SetStatusCode(w.status)
	for k, vs := range w.header {
		switch k {
		case "Content-Length": // fasthttp counts the body itself
			if n, err := strconv.Atoi(firstValue(vs)); w.head && err == nil && n >= 0 {
				rh.SetContentLength(n)
			}
			continue
		case "Content-Type":
			rh.SetContentType(firstValue(vs))
			continue
		}
		for _, v := range vs {
			rh.Add(k, v) // "Connection: close" closes the connection
		}
	}
}

func firstValue(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}
