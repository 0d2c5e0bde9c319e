package discovery

import (
	"bytes"
	"context"
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

	"github.com/dcounter/dcounter/internal/api"
	"github.com/dcounter/dcounter/internal/clock"
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
}

// Server is the registry's HTTP handler; it also expires entries and
// saves the data file in the background.
type Server struct {
	cfg Config
	log *slog.Logger
	clk clock.Clock

	mu  sync.Mutex
	reg *Registry

	stop chan struct{}
	done chan struct{}
	once sync.Once

	requests *prometheus.CounterVec
	expired  prometheus.Counter
	metrics  http.Handler
}

// New returns a running server (loading DataFile if it exists).
func New(cfg Config) (*Server, error) {
	if cfg.TTL == 0 {
		cfg.TTL = 5 * time.Second
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
	s := &Server{cfg: cfg, log: cfg.Logger, clk: cfg.Clock,
		reg:  NewRegistry(RegistryConfig{TTL: cfg.TTL}),
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
	var err error
	switch r.URL.Path {
	case "/register", "/heartbeat":
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			err = fmt.Errorf("%w: use POST", errMethod)
			break
		}
		err = s.upsert(w, r, r.URL.Path == "/register")
	case "/peers":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			err = fmt.Errorf("%w: use GET", errMethod)
			break
		}
		api.WriteJSON(w, http.StatusOK, s.Peers())
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
		api.WriteJSON(w, http.StatusOK, map[string]any{"status": "ok", "entries": n})
	default:
		err = fmt.Errorf("%w: %s", errNotFound, r.URL.Path)
	}
	if r.URL.Path == "/register" || r.URL.Path == "/heartbeat" {
		outcome := "ok"
		if err != nil {
			outcome = strconv.Itoa(statusOf(err))
		}
		s.requests.WithLabelValues(r.URL.Path[1:], outcome).Inc()
	}
	if err != nil {
		api.WriteJSON(w, statusOf(err), map[string]string{"error": err.Error()})
	}
}

func (s *Server) initMetrics() {
	reg := prometheus.NewRegistry()
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dcounter_discovery_requests_total",
		Help: "Register and heartbeat requests by route and outcome (ok or the HTTP status).",
	}, []string{"route", "outcome"})
	s.expired = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "dcounter_discovery_expired_total", Help: "Entries expired after their TTL.",
	})
	entries := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "dcounter_discovery_entries", Help: "Registered entries.",
	}, func() float64 { s.mu.Lock(); defer s.mu.Unlock(); return float64(s.reg.Len()) })
	reg.MustRegister(s.requests, s.expired, entries,
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

func (s *Server) upsert(w http.ResponseWriter, r *http.Request, register bool) error {
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	e, err := decodeEntry(body)
	if err != nil {
		return err
	}
	now := s.clk.Now()
	s.mu.Lock()
	created, err := s.reg.Upsert(e, sourceOf(r), register, now)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if created {
		s.log.Info("node registered", "id", e.ID, "name", e.Name, "gossip_addr", e.GossipAddr)
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"ttl_ms": s.cfg.TTL.Milliseconds()})
	return nil
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
