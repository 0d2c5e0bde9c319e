package discovery

import (
	"bytes"
	"context"
	"crypto/hmac"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dcounter/dcounter/internal/clock"
	"github.com/dcounter/dcounter/internal/clusterkey"
)

const persistPeriod = time.Second

// Config configures a Server. Zero fields take the defaults stated.
type Config struct {
	// TTL is how long an entry lives without a heartbeat. Default 5s.
	TTL time.Duration
	// DataFile, if set, keeps the registry across restarts.
	DataFile string
	// Logger receives the server's logs. Default: discard.
	Logger *slog.Logger
	// Clock drives expiry. Default: the wall clock.
	Clock clock.Clock
	// Keyring, if not empty, authenticates every register, heartbeat and
	// peers request (see the package doc); requests without a valid MAC are
	// refused with 401 and change nothing. Empty: requests are open, and a
	// live id stays with the IP address that registered it.
	Keyring clusterkey.Keyring
	// MaxEntries bounds the registry. Default MaxEntries (10,000).
	MaxEntries int
	// MaxPerSource bounds the entries registered from one IP address.
	// Default 256.
	MaxPerSource int
}

// Defaults of Config's fields (a zero field takes its default); the flags
// of 'dcounter discovery' default to the same values.
const (
	DefaultTTL          = 5 * time.Second
	DefaultMaxPerSource = 256
	DefaultMaxEntries   = MaxEntries
	DefaultAddr         = "127.0.0.1:8500"
)

// Server is the registry's HTTP handler; it also expires entries and
// saves the data file in the background.
type Server struct {
	cfg Config
	log *slog.Logger
	clk clock.Clock

	mu     sync.Mutex
	reg    *Registry
	nonces *nonces

	// Refusals of unauthenticated requests are logged at most once a
	// second, with the count since the last line.
	logMu       sync.Mutex
	lastAuthLog time.Time
	authRefused int

	stop chan struct{}
	done chan struct{}
	once sync.Once

	requests *prometheus.CounterVec
	refused  *prometheus.CounterVec
	expired  prometheus.Counter
	metrics  http.Handler
}

// New returns a running server (loading DataFile if it exists).
func New(cfg Config) (*Server, error) {
	if cfg.TTL < 0 || cfg.MaxEntries < 0 || cfg.MaxPerSource < 0 {
		return nil, fmt.Errorf("discovery: TTL, MaxEntries and MaxPerSource must not be negative (0 means the default)")
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.TTL < MinTTL {
		return nil, fmt.Errorf("discovery: TTL %v is below the minimum %v", cfg.TTL, MinTTL)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	if cfg.MaxPerSource == 0 {
		cfg.MaxPerSource = DefaultMaxPerSource
	}
	s := &Server{cfg: cfg, log: cfg.Logger, clk: cfg.Clock, nonces: newNonces(),
		reg: NewRegistry(RegistryConfig{TTL: cfg.TTL, MaxEntries: cfg.MaxEntries,
			MaxPerSource: cfg.MaxPerSource, Sticky: cfg.Keyring.Empty()}),
		stop: make(chan struct{}), done: make(chan struct{})}
	s.initMetrics()
	if cfg.DataFile != "" {
		es, err := loadFile(cfg.DataFile)
		if err != nil {
			return nil, err
		}
		n := s.reg.Restore(es, s.clk.Now())
		s.reg.TakeDirty()
		s.log.Info("registry loaded", "file", cfg.DataFile, "live_entries", n)
	}
	go s.run()
	return s, nil
}

// run expires entries and persists the registry.
func (s *Server) run() {
	defer close(s.done)
	t := s.clk.NewTicker(min(s.cfg.TTL/4, persistPeriod))
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			s.persist()
			return
		case <-t.C():
			s.expire()
			s.persist()
		}
	}
}

func (s *Server) expire() {
	now := s.clk.Now()
	s.mu.Lock()
	gone := s.reg.Expire(now)
	s.nonces.sweep(now)
	s.mu.Unlock()
	for _, e := range gone {
		s.expired.Inc()
		s.log.Info("entry expired", "id", e.ID, "name", e.Name, "gossip_addr", e.GossipAddr)
	}
}

func (s *Server) persist() {
	if s.cfg.DataFile == "" {
		return
	}
	now := s.clk.Now()
	s.mu.Lock()
	if !s.reg.TakeDirty() {
		s.mu.Unlock()
		return
	}
	es := s.reg.Snapshot(now)
	s.mu.Unlock()
	if err := saveFile(s.cfg.DataFile, es); err != nil {
		s.log.Error("cannot save the registry", "file", s.cfg.DataFile, "err", err)
		s.mu.Lock()
		s.reg.MarkDirty()
		s.mu.Unlock()
	}
}

// Peers returns the live entries.
func (s *Server) Peers() []Entry {
	now := s.clk.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reg.Peers(now)
}

// Close stops expiry and saves the registry. It is idempotent.
func (s *Server) Close() error {
	s.once.Do(func() {
		close(s.stop)
		<-s.done
	})
	return nil
}

// Errors the handlers answer with, besides the registry's.
var (
	errNotFound   = errors.New("not found")
	errMethod     = errors.New("method not allowed")
	errTooLarge   = fmt.Errorf("request body larger than %d bytes", MaxBody)
	errBadRequest = ErrBadEntry
)

// statusOf is the one table from errors to HTTP statuses.
func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrUnauthenticated):
		return http.StatusUnauthorized
	case errors.Is(err, ErrTooManyChallenges):
		return http.StatusTooManyRequests
	case errors.Is(err, errNotFound), errors.Is(err, ErrUnknownID):
		return http.StatusNotFound
	case errors.Is(err, errMethod):
		return http.StatusMethodNotAllowed
	case errors.Is(err, errTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrBadEntry):
		return http.StatusBadRequest
	case errors.Is(err, ErrOwned):
		return http.StatusConflict
	case errors.Is(err, ErrSourceFull):
		return http.StatusTooManyRequests
	case errors.Is(err, ErrFull):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// ServeHTTP serves the discovery API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	route := r.URL.Path
	var (
		status int
		v      any
		auth   *authState
		err    error
	)
	switch route {
	case "/register", "/heartbeat", "/peers":
		status, v, auth, err = s.serveRegistry(w, r)
	case "/challenge":
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			err = fmt.Errorf("%w: use POST", errMethod)
			break
		}
		status, v, err = s.challenge(r)
	case "/metrics":
		s.metrics.ServeHTTP(w, r)
		return
	case "/health":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			err = fmt.Errorf("%w: use GET", errMethod)
			break
		}
		s.mu.Lock()
		n := s.reg.Len()
		s.mu.Unlock()
		status, v = http.StatusOK, map[string]any{"status": "ok", "entries": n}
	default:
		err = fmt.Errorf("%w: %s", errNotFound, route)
		route = "other"
	}
	if err != nil {
		status, v = statusOf(err), map[string]string{"error": err.Error()}
		s.refusal(r, err)
	}
	if route != "/metrics" && route != "/health" && route != "other" {
		outcome := "ok"
		if err != nil {
			outcome = strconv.Itoa(status)
		}
		s.requests.WithLabelValues(route[1:], outcome).Inc()
	}
	s.answer(w, status, v, auth)
}

// authState is what a request proved: the key it was signed with and its
// nonce, used to sign the answer.
type authState struct {
	key   clusterkey.Key
	nonce Nonce
}

// answer writes v as JSON, signed when the request was authenticated.
func (s *Server) answer(w http.ResponseWriter, status int, v any, auth *authState) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	if auth != nil {
		h.Set(ResponseMACHeader, base64.RawURLEncoding.EncodeToString(ResponseMAC(auth.key, auth.nonce, status, b)))
	}
	if status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", AuthScheme)
	}
	w.WriteHeader(status)
	w.Write(b)
}

// refusal counts a refused request and logs refusals at most once a
// second: anyone can send those, and the log must not be theirs to fill.
func (s *Server) refusal(r *http.Request, err error) {
	var reason string
	switch {
	case errors.Is(err, ErrUnauthenticated):
		reason = "unauthenticated"
	case errors.Is(err, ErrTooManyChallenges):
		reason = "challenges"
	case errors.Is(err, ErrFull):
		reason = "full"
	case errors.Is(err, ErrSourceFull):
		reason = "source_full"
	case errors.Is(err, ErrOwned):
		reason = "owned"
	default:
		return
	}
	s.refused.WithLabelValues(reason).Inc()
	now := s.clk.Now()
	s.logMu.Lock()
	s.authRefused++
	if !s.lastAuthLog.IsZero() && now.Sub(s.lastAuthLog) < time.Second {
		s.logMu.Unlock()
		return
	}
	n := s.authRefused
	s.authRefused, s.lastAuthLog = 0, now
	s.logMu.Unlock()
	s.log.Warn("requests refused (logged at most once a second)",
		"count", n, "last_source", sourceOf(r), "last_path", r.URL.Path, "last_err", err)
}

// challenge issues a nonce for the next authenticated request.
func (s *Server) challenge(r *http.Request) (int, any, error) {
	if s.cfg.Keyring.Empty() {
		return 0, nil, fmt.Errorf("%w: this server has no --cluster-key; requests need no challenge", errNotFound)
	}
	now := s.clk.Now()
	s.mu.Lock()
	n, err := s.nonces.issue(sourceOf(r), now)
	s.mu.Unlock()
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"nonce": n.String(), "ttl_ms": NonceTTL.Milliseconds()}, nil
}

// serveRegistry serves /register, /heartbeat and /peers, authenticating
// them first when the server has a keyring.
func (s *Server) serveRegistry(w http.ResponseWriter, r *http.Request) (int, any, *authState, error) {
	method := http.MethodPost
	if r.URL.Path == "/peers" {
		method = http.MethodGet
	}
	if r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead) {
		w.Header().Set("Allow", method)
		if method == http.MethodGet {
			w.Header().Set("Allow", "GET, HEAD")
		}
		return 0, nil, nil, fmt.Errorf("%w: use %s", errMethod, method)
	}
	body, err := readBody(w, r)
	if err != nil {
		return 0, nil, nil, err
	}
	var auth *authState
	if !s.cfg.Keyring.Empty() {
		if auth, err = s.authenticate(r, body); err != nil {
			return 0, nil, nil, err
		}
	}
	if r.URL.Path == "/peers" {
		return http.StatusOK, s.Peers(), auth, nil
	}
	e, err := decodeEntry(body)
	if err != nil {
		return 0, nil, auth, err
	}
	now := s.clk.Now()
	s.mu.Lock()
	created, err := s.reg.Upsert(e, sourceOf(r), r.URL.Path == "/register", now)
	s.mu.Unlock()
	if err != nil {
		return 0, nil, auth, err
	}
	if created {
		s.log.Info("node registered", "id", e.ID, "name", e.Name, "gossip_addr", e.GossipAddr, "source", sourceOf(r))
	}
	return http.StatusOK, map[string]any{"ttl_ms": s.cfg.TTL.Milliseconds()}, auth, nil
}

// authenticate checks r's Authorization header against body: a nonce this
// server issued and nobody used yet, and a MAC under one of its keys. The
// nonce is spent whatever the outcome.
func (s *Server) authenticate(r *http.Request, body []byte) (*authState, error) {
	a, err := parseAuthorization(r.Header.Get("Authorization"))
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	fresh := s.nonces.consume(a.nonce, s.clk.Now())
	s.mu.Unlock()
	if !fresh {
		return nil, fmt.Errorf("%w: unknown, used or expired nonce (get a new one from POST /challenge)", ErrUnauthenticated)
	}
	k, ok := s.cfg.Keyring.Find(a.key)
	if !ok {
		return nil, fmt.Errorf("%w: key %s is not in this server's keyring", ErrUnauthenticated, a.key)
	}
	if !hmac.Equal(a.mac, RequestMAC(k, r.Method, r.URL.Path, a.nonce, body)) {
		return nil, fmt.Errorf("%w: bad MAC", ErrUnauthenticated)
	}
	return &authState{key: k, nonce: a.nonce}, nil
}

func (s *Server) initMetrics() {
	reg := prometheus.NewRegistry()
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dcounter_discovery_requests_total",
		Help: "Register and heartbeat requests by route and outcome (ok or the HTTP status).",
	}, []string{"route", "outcome"})
	s.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dcounter_discovery_refused_total",
		Help: "Requests refused by reason: unauthenticated, challenges (too many outstanding), full (registry), source_full (per-IP bound), owned (id held by another IP).",
	}, []string{"reason"})
	s.expired = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "dcounter_discovery_expired_total", Help: "Entries expired after their TTL.",
	})
	entries := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "dcounter_discovery_entries", Help: "Registered entries.",
	}, func() float64 { s.mu.Lock(); defer s.mu.Unlock(); return float64(s.reg.Len()) })
	reg.MustRegister(s.requests, s.refused, s.expired, entries,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	s.metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// readBody reads a request body of at most MaxBody bytes.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errTooLarge
		}
		return nil, fmt.Errorf("%w: %v", errBadRequest, err)
	}
	return body, nil
}

// decodeEntry parses a register or heartbeat body.
func decodeEntry(body []byte) (Entry, error) {
	var e Entry
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return e, fmt.Errorf("%w: body must be JSON {\"id\",\"name\",\"gossip_addr\",\"http_addr\"}: %v", errBadRequest, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return e, fmt.Errorf("%w: trailing data after the JSON object", errBadRequest)
	}
	return e, nil
}

// sourceOf is the client IP address a request came from.
func sourceOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Serve runs the server on ln until ctx ends, then shuts down gracefully.
func Serve(ctx context.Context, ln net.Listener, s *Server) error {
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}
