// Package tlsfiles serves and dials TLS with certificates kept in PEM files
// that an operator (or cert-manager, or certbot) may replace at any time.
//
// A server checks its files with a cheap stat on every new connection and
// loads them again when their size, modification time or inode changed; it
// also reloads on demand (SIGHUP). Connections already open keep the
// certificate they started with; new ones get the new certificate at once,
// without a restart. A replacement that does not load (a key that does not
// match the certificate, half-written PEM) is logged once and the previous
// certificate stays in force until the files change again.
//
// Invariants: a server never runs without a certificate (New fails instead);
// a failed reload never replaces a working certificate; nothing here reads
// the wall clock, but certificate validity is checked by crypto/tls against
// it (a clock outside a certificate's NotBefore..NotAfter makes handshakes
// with that certificate fail).
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
)

// ErrTLS reports unusable TLS files.
var ErrTLS = errors.New("tlsfiles: invalid TLS files")

// Config names a server's files.
type Config struct {
	// CertFile and KeyFile hold the PEM certificate chain and private key.
	CertFile, KeyFile string
	// ClientCAFile, if set, holds the PEM CA certificates that client
	// certificates must chain to: every client must then present one
	// (mutual TLS).
	ClientCAFile string
	// Logger receives reload messages. Default: discard.
	Logger *slog.Logger
}

// Server holds a server's current certificate. Its methods are safe for
// concurrent use.
type Server struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	sig    string      // stat signature of the files last tried
	cur    *tls.Config // built from the files last loaded successfully
	cert   *tls.Certificate
	leaf   *x509.Certificate
	failed bool // the files at sig did not load
}

// NewServer loads cfg's files.
func NewServer(cfg Config) (*Server, error) {
	if cfg.CertFile == "" || cfg.KeyFile == "" {
		return nil, fmt.Errorf("%w: give both a certificate and a key file", ErrTLS)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: cfg.Logger}
	if err := s.load(s.signature()); err != nil {
		return nil, err
	}
	return s, nil
}

// TLSConfig returns the configuration to serve with (tls.NewListener): each
// handshake gets the certificate current at that moment.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.current(), nil
		},
	}
}

// ClientCertificate returns the current certificate for use as a client
// certificate (tls.Config.GetClientCertificate), so that a gateway can
// prove itself to nodes that require mutual TLS with the same files it
// serves with. The certificate needs the clientAuth extended key usage.
func (s *Server) ClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	s.current()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cert, nil
}

// Reload loads the files now, whether or not they look changed. On error
// the certificate in force stays.
func (s *Server) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loadLocked(s.signature())
}

// Leaf returns the certificate in force (for logs: subject, expiry).
func (s *Server) Leaf() *x509.Certificate {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leaf
}

// current returns the config for a new connection, reloading first if the
// files changed since they were last tried.
func (s *Server) current() *tls.Config {
	sig := s.signature()
	s.mu.Lock()
	defer s.mu.Unlock()
	if sig != s.sig {
		if err := s.loadLocked(sig); err != nil {
			s.log.Error("TLS files changed but do not load; still serving the previous certificate", "err", err)
		}
	}
	return s.cur
}

func (s *Server) load(sig string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loadLocked(sig)
}

func (s *Server) loadLocked(sig string) error {
	s.sig = sig
	cert, err := tls.LoadX509KeyPair(s.cfg.CertFile, s.cfg.KeyFile)
	if err != nil {
		s.failed = true
		return fmt.Errorf("%w: %v", ErrTLS, err)
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if s.cfg.ClientCAFile != "" {
		pool, err := LoadPool(s.cfg.ClientCAFile)
		if err != nil {
			s.failed = true
			return err
		}
		c.ClientCAs, c.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	if s.cur != nil && s.failed {
		s.log.Info("TLS files load again")
	}
	if s.cur != nil {
		s.log.Info("TLS certificate reloaded", "subject", cert.Leaf.Subject.String(), "not_after", cert.Leaf.NotAfter)
	}
	s.cur, s.cert, s.leaf, s.failed = c, &cert, cert.Leaf, false
	return nil
}

// signature identifies the files' current versions: it changes when one is
// rewritten in place or replaced by a rename.
func (s *Server) signature() string {
	sig := ""
	for _, p := range []string{s.cfg.CertFile, s.cfg.KeyFile, s.cfg.ClientCAFile} {
		if p == "" {
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			sig += "missing;"
			continue
		}
		sig += fmt.Sprintf("%d,%d,%d;", fi.Size(), fi.ModTime().UnixNano(), inode(fi))
	}
	return sig
}

// LoadPool reads PEM CA certificates.
func LoadPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTLS, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%w: %s holds no PEM certificate", ErrTLS, path)
	}
	return pool, nil
}

// ClientConfig returns the configuration to dial servers with: their
// certificates must chain to the CAs in caFile, or to the system's roots if
// caFile is empty.
func ClientConfig(caFile string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := LoadPool(caFile)
		if err != nil {
			return nil, err
		}
		c.RootCAs = pool
	}
	return c, nil
}
