package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"

	"github.com/dcounter/dcounter/internal/api"
	"github.com/dcounter/dcounter/internal/ui"
)

// Run serves clients on ln until ctx ends: the client API, the dashboard
// (/ui: its files without a token, its data like the API) and, with
// cfg.Auth, a token checked on every request; over TLS with cfg.ServerTLS.
// When ctx ends it stops accepting, lets requests in flight finish within
// cfg.ShutdownTimeout and closes the gateway (Close). It owns ln from the
// call on and returns once every goroutine it started has ended: nil after
// a clean stop, else why serving or stopping failed.
func (g *Gateway) Run(ctx context.Context, ln net.Listener) error {
	if g.cfg.ServerTLS != nil {
		ln = tls.NewListener(ln, g.cfg.ServerTLS)
	}
	var handler http.Handler = ui.MountAPI(g, g)
	if g.cfg.Auth != nil {
		handler = api.Authorize(handler, g.cfg.Auth)
	}
	srv := api.NewServer(ui.Mount(handler))
	// Failed TLS handshakes and malformed requests are anyone's to cause:
	// debug level, not stderr.
	srv.ErrorLog = slog.NewLogLogger(g.log.With("component", "api").Handler(), slog.LevelDebug)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), g.cfg.ShutdownTimeout)
		err = srv.Shutdown(sctx)
		cancel()
		if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
	}
	g.Close()
	return err
}
