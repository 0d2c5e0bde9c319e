package respserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dcounter/dcounter/internal/auth"
	"github.com/dcounter/dcounter/internal/resp"
	"github.com/dcounter/dcounter/internal/service"
)

// ErrServerClosed is returned by Serve after Shutdown; it matches
// net.ErrClosed.
var ErrServerClosed = fmt.Errorf("respserver: server closed: %w", net.ErrClosed)

// Defaults of Config.
const (
	DefaultMaxClients = 10000
	// AuthTimeout bounds how long a connection may stay unauthenticated
	// when Config.Auth is set, so that connections without a token cannot
	// hold every client slot: after it, the connection is closed.
	AuthTimeout = 60 * time.Second
	// HandshakeTimeout bounds a TLS handshake.
	HandshakeTimeout = 10 * time.Second
	// rejectTimeout bounds the write of "max number of clients reached".
	rejectTimeout = time.Second
)

// authTimeout is AuthTimeout; tests shorten it before New.
var authTimeout = AuthTimeout

// Config configures a Server. A zero field takes the default stated on it.
type Config struct {
	// Service serves the commands (the node wraps it with
	// service.Instrument(…, "resp")).
	Service service.Service
	// Auth looks tokens up; nil: no AUTH needed, and every client has the
	// admin role.
	Auth TokenLookup
	// TLS, if not nil, makes the listener speak TLS only.
	TLS *tls.Config
	// MaxClients bounds the connections served at once (default
	// DefaultMaxClients); one more is answered "ERR max number of clients
	// reached" and closed.
	MaxClients int
	// IdleTimeout closes a connection that sent nothing for so long, and
	// bounds the write of a reply (default 0: never, as Redis's timeout 0).
	IdleTimeout time.Duration
	// Limits bound what an authenticated connection may send (resp's
	// defaults for zero fields); before AUTH resp.UnauthenticatedLimits
	// apply.
	Limits resp.Limits
	// Version is dcounter's version, for INFO and HELLO.
	Version string
	// Log receives connection errors and, at debug level, failed AUTHs
	// (nil: discard).
	Log *slog.Logger
}

// TokenLookup finds the identity a token belongs to; *auth.File satisfies it.
type TokenLookup interface {
	Lookup(token string) (auth.Identity, bool)
}

var _ TokenLookup = (*auth.File)(nil)

// Generationer is implemented by a TokenLookup whose tokens can change
// (*auth.File, on SIGHUP): after each change, a connection looks its token
// up again before its next command, and is closed if the token is gone.
type Generationer interface {
	Generation() uint64
}

var _ Generationer = (*auth.File)(nil)

// Server serves the Redis protocol over a service.Service.
type Server struct {
	cfg     Config
	svc     service.Service
	rec     service.Recorder // nil if svc does not record
	log     *slog.Logger
	cursors *cursorTable
	started time.Time     // monotonic, for INFO's uptime only
	authTO  time.Duration // AuthTimeout (authTimeout when made)

	ctx    context.Context // cancelled when Shutdown gives up waiting
	cancel context.CancelFunc

	closing atomic.Bool
	// draining and drained: see Drain.
	draining atomic.Bool
	drained  atomic.Int64
	nextID   atomic.Int64
	clients  atomic.Int64
	port     atomic.Int64

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	wg        sync.WaitGroup
}

// New returns a server for cfg; Serve starts it on a listener.
func New(cfg Config) *Server {
	if cfg.MaxClients <= 0 {
		cfg.MaxClients = DefaultMaxClients
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:       cfg,
		svc:       cfg.Service,
		log:       cfg.Log,
		cursors:   newCursorTable(maxCursors),
		started:   time.Now(),
		authTO:    authTimeout,
		listeners: map[net.Listener]struct{}{},
		conns:     map[*conn]struct{}{},
	}
	s.rec, _ = cfg.Service.(service.Recorder)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// Clients returns the number of connections being served.
func (s *Server) Clients() int { return int(s.clients.Load()) }

// Serve accepts connections on ln until Shutdown, and then returns
// ErrServerClosed. ln is closed when Serve returns.
func (s *Server) Serve(ln net.Listener) error {
	if a, ok := ln.Addr().(*net.TCPAddr); ok {
		s.port.Store(int64(a.Port))
	}
	if s.cfg.TLS != nil {
		ln = tls.NewListener(ln, s.cfg.TLS)
	}
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		ln.Close()
		s.wg.Done()
	}()

	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return ErrServerClosed
			}
			if temporary(err) {
				// Out of file descriptors and the like: wait, as net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("resp: accept failed; retrying", "err", err, "in", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("respserver: accept: %w", err)
		}
		backoff = 0
		s.start(nc)
	}
}

// temporary reports whether an accept error will likely pass (EMFILE,
// ECONNABORTED…): the listener is still good.
func temporary(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// start serves nc on its own goroutine, or refuses it when the server is
// full or closing.
func (s *Server) start(nc net.Conn) {
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		nc.Close()
		return
	}
	s.wg.Add(1)
	if int(s.clients.Load()) >= s.cfg.MaxClients {
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			// Redis answers before closing, so that the client can tell
			// why; the deadline keeps a client that reads nothing from
			// holding the goroutine.
			nc.SetDeadline(time.Now().Add(rejectTimeout))
			nc.Write([]byte("-ERR max number of clients reached\r\n"))
			nc.Close()
		}()
		return
	}
	c := newConn(s, nc)
	s.conns[c] = struct{}{}
	s.clients.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer s.remove(c)
		c.serve()
	}()
}

func (s *Server) remove(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.clients.Add(-1)
	s.mu.Unlock()
}

// DrainingReply is the answer to every command but QUIT once Drain was
// called: nothing was applied, so a client may safely send it elsewhere.
// TRYAGAIN is the error Redis Cluster clients already retry.
const DrainingReply = "TRYAGAIN node shutting down: nothing was applied, try another node"

// Drain makes every command from now on, on every connection, answer
// DrainingReply (QUIT excepted), before Shutdown closes the connections:
// a command a client sends just as its connection is closed would end with
// no answer, in doubt, while a refused one is certainly not applied. The
// owner calls Shutdown once Drained stops rising.
func (s *Server) Drain() { s.draining.Store(true) }

// Drained reports how many commands Drain has refused so far.
func (s *Server) Drained() int64 { return s.drained.Load() }

// Shutdown stops accepting, lets every command being executed answer,
// closes every connection and waits for their goroutines. If ctx ends
// first, the connections are closed at once, the service calls in flight
// are cancelled, and Shutdown returns ctx's error once they are gone.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing.Store(true)
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		c.wake()
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
	}
	s.cancel()
	s.mu.Lock()
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	<-done
	return ctx.Err()
}
