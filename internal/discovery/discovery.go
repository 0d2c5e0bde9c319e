// Package discovery is dcounter's discovery server: a registry of live nodes
// that new nodes read to find peers. It is a convenience, never a single point
// of failure: nodes gossip their member lists among themselves, and a running
// cluster keeps working and converging while this server is down.
//
//	POST /register   {"id","name","gossip_addr","http_addr"} → 200 {"ttl_ms":…}
//	POST /heartbeat  same body; 404 if the id is unknown (register again)
//	GET  /peers      [{"id","name","gossip_addr","http_addr","last_seen"}, …] (live entries)
//	GET  /health     {"status":"ok","entries":N}
//	GET  /metrics    Prometheus metrics
//
// An entry expires TTL after its last register or heartbeat. The registry
// optionally persists to a file so that a restarted server answers /peers at
// once; either way every live node is relearned within two heartbeat
// intervals, because heartbeats for unknown ids are answered 404 and nodes
// register again.
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
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dcounter/dcounter/internal/api"
	"github.com/dcounter/dcounter/internal/atomicfile"
	"github.com/dcounter/dcounter/internal/clock"
	"github.com/dcounter/dcounter/internal/crdt"
)

// Limits.
const (
	MaxBody       = 16 << 10
	MaxEntries    = 10_000
	MinTTL        = 100 * time.Millisecond
	maxNameLen    = 256
	maxAddrLen    = 255
	persistPeriod = time.Second
)

// Entry is one registered node.
type Entry struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	GossipAddr string    `json:"gossip_addr"`
	HTTPAddr   string    `json:"http_addr"`
	LastSeen   time.Time `json:"last_seen"`
}

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

// Server is the registry and its HTTP handler.
type Server struct {
	cfg Config
	log *slog.Logger
	clk clock.Clock

	mu      sync.Mutex
	entries map[string]*Entry
	dirty   bool

	stop chan struct{}
	done chan struct{}
	once sync.Once

	requests *prometheus.CounterVec
	expired  prometheus.Counter
	metrics  http.Handler
}

// New returns a running registry (loading DataFile if it exists).
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
	s := &Server{cfg: cfg, log: cfg.Logger, clk: cfg.Clock, entries: map[string]*Entry{},
		stop: make(chan struct{}), done: make(chan struct{})}
	s.initMetrics()
	if cfg.DataFile != "" {
		if err := s.load(); err != nil {
			return nil, err
		}
	}
	go s.run()
	return s, nil
}

func (s *Server) load() error {
	b, err := os.ReadFile(s.cfg.DataFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("discovery: %w", err)
	}
	var es []Entry
	if err := json.Unmarshal(b, &es); err != nil {
		return fmt.Errorf("discovery: %s is corrupt: %w (move it away to start empty)", s.cfg.DataFile, err)
	}
	now := s.clk.Now()
	for i := range es {
		e := es[i]
		if validate(&e) != nil || now.Sub(e.LastSeen) > s.cfg.TTL || len(s.entries) >= MaxEntries {
			continue
		}
		s.entries[e.ID] = &e
	}
	s.log.Info("registry loaded", "file", s.cfg.DataFile, "live_entries", len(s.entries))
	return nil
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
	defer s.mu.Unlock()
	for id, e := range s.entries {
		if now.Sub(e.LastSeen) > s.cfg.TTL {
			delete(s.entries, id)
			s.expired.Inc()
			s.dirty = true
			s.log.Info("entry expired", "id", id, "name", e.Name, "gossip_addr", e.GossipAddr)
		}
	}
}

func (s *Server) persist() {
	if s.cfg.DataFile == "" {
		return
	}
	s.mu.Lock()
	if !s.dirty {
		s.mu.Unlock()
		return
	}
	es := s.snapshotLocked()
	s.dirty = false
	s.mu.Unlock()
	if err := atomicfile.WriteJSON(s.cfg.DataFile, es); err != nil {
		s.log.Error("cannot save the registry", "file", s.cfg.DataFile, "err", err)
		s.mu.Lock()
		s.dirty = true
		s.mu.Unlock()
	}
}

func (s *Server) snapshotLocked() []Entry {
	es := make([]Entry, 0, len(s.entries))
	for _, e := range s.entries {
		es = append(es, *e)
	}
	slices.SortFunc(es, func(a, b Entry) int {
		if a.Name != b.Name {
			if a.Name < b.Name {
				return -1
			}
			return 1
		}
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return es
}

// Peers returns the live entries.
func (s *Server) Peers() []Entry {
	now := s.clk.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	es := s.snapshotLocked()
	live := es[:0]
	for _, e := range es {
		if now.Sub(e.LastSeen) <= s.cfg.TTL {
			live = append(live, e)
		}
	}
	return live
}

// Close stops expiry and saves the registry. It is idempotent.
func (s *Server) Close() error {
	s.once.Do(func() {
		close(s.stop)
		<-s.done
	})
	return nil
}

// Errors the handlers answer with.
var (
	errNotFound   = errors.New("not found")
	errMethod     = errors.New("method not allowed")
	errTooLarge   = fmt.Errorf("request body larger than %d bytes", MaxBody)
	errBadRequest = errors.New("bad request")
	errUnknownID  = errors.New("unknown id: register again")
	errFull       = fmt.Errorf("registry full (%d entries)", MaxEntries)
)

func statusOf(err error) int {
	switch {
	case errors.Is(err, errNotFound), errors.Is(err, errUnknownID):
		return http.StatusNotFound
	case errors.Is(err, errMethod):
		return http.StatusMethodNotAllowed
	case errors.Is(err, errTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, errBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, errFull):
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
		n := len(s.entries)
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
	}, func() float64 { s.mu.Lock(); defer s.mu.Unlock(); return float64(len(s.entries)) })
	reg.MustRegister(s.requests, s.expired, entries,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	s.metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

func (s *Server) upsert(w http.ResponseWriter, r *http.Request, register bool) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errTooLarge
		}
		return fmt.Errorf("%w: %v", errBadRequest, err)
	}
	var e Entry
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return fmt.Errorf("%w: body must be JSON {\"id\",\"name\",\"gossip_addr\",\"http_addr\"}: %v", errBadRequest, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: trailing data after the JSON object", errBadRequest)
	}
	if err := validate(&e); err != nil {
		return err
	}
	now := s.clk.Now()
	s.mu.Lock()
	cur := s.entries[e.ID]
	switch {
	case cur == nil && !register:
		s.mu.Unlock()
		return fmt.Errorf("%w %s", errUnknownID, e.ID)
	case cur == nil && len(s.entries) >= MaxEntries:
		s.mu.Unlock()
		return errFull
	case cur == nil:
		s.log.Info("node registered", "id", e.ID, "name", e.Name, "gossip_addr", e.GossipAddr)
	}
	e.LastSeen = now
	s.entries[e.ID] = &e
	s.dirty = true
	s.mu.Unlock()
	api.WriteJSON(w, http.StatusOK, map[string]any{"ttl_ms": s.cfg.TTL.Milliseconds()})
	return nil
}

// validate checks e and puts its id in canonical (lower-case) form, so one
// replica has one entry however its id was spelled.
func validate(e *Entry) error {
	id, err := crdt.ParseReplicaID(e.ID)
	if err != nil {
		return fmt.Errorf("%w: id must be 16 hex digits", errBadRequest)
	}
	e.ID = id.String()
	if len(e.Name) > maxNameLen {
		return fmt.Errorf("%w: name longer than %d bytes", errBadRequest, maxNameLen)
	}
	if err := validAddr(e.GossipAddr); err != nil {
		return fmt.Errorf("%w: gossip_addr: %v", errBadRequest, err)
	}
	if e.HTTPAddr != "" {
		if err := validAddr(e.HTTPAddr); err != nil {
			return fmt.Errorf("%w: http_addr: %v", errBadRequest, err)
		}
	}
	return nil
}

func validAddr(a string) error {
	if a == "" || len(a) > maxAddrLen {
		return errors.New("want host:port")
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil || host == "" {
		return errors.New("want host:port")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return errors.New("port must be 1-65535")
	}
	return nil
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
