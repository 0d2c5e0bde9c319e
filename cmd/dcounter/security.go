package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/dcounter/dcounter/internal/auth"
	"github.com/dcounter/dcounter/internal/clusterkey"
	"github.com/dcounter/dcounter/internal/tlsfiles"
	"github.com/spf13/pflag"
)

// apiFlags are the client-API security flags of node and gateway (auth and
// TLS) and of discovery (TLS only).
type apiFlags struct {
	withAuth                  bool
	authFile                  string
	insecureAPI               bool
	tlsCert, tlsKey, clientCA string
}

func (af *apiFlags) register(fs *pflag.FlagSet, withAuth bool) {
	af.withAuth = withAuth
	if withAuth {
		fs.StringVar(&af.authFile, "auth-file", "", "`file` of client tokens, one 'TOKEN ROLE [NAME]' per line (ROLE: read, write or admin; make tokens with 'dcounter keygen'); reloaded on SIGHUP. Without it the client API is open to whoever can reach it")
		fs.BoolVar(&af.insecureAPI, "insecure-api", false, "allow the client API without --auth-file on an address other machines can reach (anyone who can reach it can then read and change every counter)")
	}
	fs.StringVar(&af.tlsCert, "tls-cert", "", "PEM certificate chain `file` to serve HTTPS with (with --tls-key); reloaded when the file changes or on SIGHUP")
	fs.StringVar(&af.tlsKey, "tls-key", "", "PEM private key `file` for --tls-cert")
	fs.StringVar(&af.clientCA, "tls-client-ca", "", "PEM CA `file`: require every client to present a certificate signed by it (mutual TLS); reloaded like --tls-cert")
}

// checkExposure refuses an open client API on an address other machines
// can reach, like Redis's protected mode: the caller's error says how to fix it.
func (af *apiFlags) checkExposure(flag, addr string) error {
	if !af.withAuth || af.authFile != "" || af.insecureAPI || loopback(addr) {
		return nil
	}
	return fmt.Errorf("%s %s can be reached from other machines, but the client API has no --auth-file:\n"+
		"anyone who can reach the port could read and change every counter. Give --auth-file PATH (one\n"+
		"'TOKEN ROLE [NAME]' per line; make tokens with 'dcounter keygen'), or pass --insecure-api on a\n"+
		"network you trust", flag, addr)
}

// apiSecurity is what apiFlags build: the guard (nil without auth) and the
// TLS server (nil without TLS).
type apiSecurity struct {
	tokens *auth.File
	guard  *auth.Guard
	tls    *tlsfiles.Server
}

// build loads the auth file and TLS files; errors are startup errors for
// the user (they name the file and line).
func (af *apiFlags) build(keys clusterkey.Keyring, log *slog.Logger) (*apiSecurity, error) {
	var s apiSecurity
	if af.authFile != "" {
		f, err := auth.LoadFile(af.authFile)
		if err != nil {
			return nil, fmt.Errorf("--auth-file: %w", err)
		}
		if fi, err := os.Stat(af.authFile); err == nil && fi.Mode().Perm()&0o044 != 0 {
			log.Warn("the auth file can be read by other users of this machine; chmod 600 it", "path", af.authFile, "mode", fi.Mode().Perm().String())
		}
		s.tokens = f
		s.guard = auth.NewGuard(f, keys, log.With("component", "auth"))
		log.Info("client API requires tokens", "auth_file", af.authFile, "tokens", f.Len())
	} else if af.withAuth {
		s.guard = auth.NewGuard(nil, keys, log.With("component", "auth"))
	}
	if (af.tlsCert == "") != (af.tlsKey == "") {
		return nil, fmt.Errorf("--tls-cert and --tls-key go together")
	}
	if af.clientCA != "" && af.tlsCert == "" {
		return nil, fmt.Errorf("--tls-client-ca needs --tls-cert and --tls-key")
	}
	if af.tlsCert != "" {
		srv, err := tlsfiles.NewServer(tlsfiles.Config{CertFile: af.tlsCert, KeyFile: af.tlsKey, ClientCAFile: af.clientCA, Logger: log.With("component", "tls")})
		if err != nil {
			return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		s.tls = srv
		leaf := srv.Leaf()
		log.Info("client API serves HTTPS", "subject", leaf.Subject.String(), "not_after", leaf.NotAfter, "mutual_tls", af.clientCA != "")
	}
	return &s, nil
}

// serverTLS is the listener's TLS configuration, or nil.
func (s *apiSecurity) serverTLS() *tls.Config {
	if s.tls == nil {
		return nil
	}
	return s.tls.TLSConfig()
}

// reload re-reads the auth file and TLS files (on SIGHUP). A file that does
// not load leaves the one in force and is logged.
func (s *apiSecurity) reload(log *slog.Logger) {
	if s.tokens != nil {
		if n, err := s.tokens.Reload(); err != nil {
			log.Error("auth file not reloaded; the previous tokens stay in force", "err", err, "tokens", n)
		} else {
			log.Info("auth file reloaded", "tokens", n)
		}
	}
	if s.tls != nil {
		if err := s.tls.Reload(); err != nil {
			log.Error("TLS files not reloaded; the previous certificate stays in force", "err", err)
		} else {
			log.Info("TLS files reloaded", "not_after", s.tls.Leaf().NotAfter)
		}
	}
}

// onHangup calls f on every SIGHUP until ctx ends.
func onHangup(ctx context.Context, f func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	go func() {
		defer signal.Stop(ch)
		for {
			select {
			case <-ctx.Done():
				return
			case <-ch:
				f()
			}
		}
	}()
}

// clientTLS builds the configuration for dialing https:// nodes and
// discovery servers that present certificates signed by caFile, presenting
// clientCert (if not nil) to servers that ask for one. Without caFile it is
// nil: https:// URLs are then verified with the system's roots.
func clientTLS(caFile string, clientCert *tlsfiles.Server) (*tls.Config, error) {
	if caFile == "" {
		return nil, nil
	}
	c, err := tlsfiles.ClientConfig(caFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-ca: %w", err)
	}
	if clientCert != nil {
		c.GetClientCertificate = clientCert.ClientCertificate
	}
	return c, nil
}
