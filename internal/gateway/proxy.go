package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"

	"github.com/dcounter/dcounter/internal/api"
	"github.com/dcounter/dcounter/internal/auth"
	"github.com/dcounter/dcounter/internal/service"
)

// Errors the gateway answers with.
var errNoNode = service.Unavailable(errors.New("no healthy node"))

func errHomeDown(b *backend) error {
	return service.Unavailable(fmt.Errorf("node %s, which this counter's writes with an Idempotency-Key belong to, is down; retry later with the same key", b.url))
}

// proxy forwards a counter request, failing over when that is safe, and
// returns an outcome label for metrics.
func (g *Gateway) proxy(w http.ResponseWriter, r *http.Request, rt api.Route) string {
	write := rt.Kind.Writes()
	var body []byte // nil for reads, never nil for writes (see forward)
	if write {
		var err error
		body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, api.MaxBody))
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				api.WriteError(w, api.ErrBodyTooLarge)
				return "bad_request"
			}
			api.WriteError(w, fmt.Errorf("%w: %v", api.ErrBadJSON, err))
			return "bad_request"
		}
		if body == nil {
			body = []byte{}
		}
	}
	idem, err := api.IdempotencyKey(r)
	if err != nil {
		api.WriteError(w, err)
		return "bad_request"
	}
	keyed := idem != "" && write
	if rt.Kind == api.RouteGet && r.Method == http.MethodGet && r.URL.RawQuery != "" {
		if min, ok, err := minParam(r); err != nil {
			api.WriteError(w, err)
			return "bad_request"
		} else if ok {
			return g.readMin(w, r, rt.Key, min)
		}
	}
	var tried []*backend
	for attempt := 0; attempt < g.cfg.MaxTries; attempt++ {
		var b *backend
		if keyed {
			if attempt > 0 {
				break // never move a keyed write to another node
			}
			b = g.home(rt.Key)
			if b == nil {
				break
			}
			if !g.healthy(b) {
				api.WriteError(w, errHomeDown(b))
				return "unavailable"
			}
		} else if rt.Kind == api.RouteList {
			// A listing has no key: any node will do, the least busy first.
			if b = g.pick(tried); b == nil {
				break
			}
		} else if b = g.route(rt.Key, tried); b == nil {
			break
		}
		tried = append(tried, b)
		if attempt > 0 && g.cfg.Metrics != nil {
			g.cfg.Metrics.retries.Inc()
		}
		resp, err := g.forward(r, b, body)
		if err != nil {
			if r.Context().Err() != nil {
				return "client_gone" // the client gave up: no retry, nothing to answer
			}
			if notSent(err) {
				g.markDown(b, err)
				if keyed {
					api.WriteError(w, errHomeDown(b))
					return "unavailable"
				}
				continue // certainly not applied: safe to try another node
			}
			g.log.Warn("node failed after the request was sent", "url", b.url, "err", err)
			api.WriteJSON(w, http.StatusBadGateway, api.ErrorResponse{Error: fmt.Sprintf(
				"node %s failed after the request was sent: the change may or may not have been applied; retry with an Idempotency-Key to be safe", b.url)})
			return "unknown"
		}
		if resp.StatusCode == http.StatusServiceUnavailable && !keyed {
			resp.Body.Close()
			g.markDown(b, fmt.Errorf("answered 503"))
			continue // the node refused before applying anything
		}
		copyResponse(w, resp)
		if resp.StatusCode/100 == 2 {
			return "ok"
		}
		return "error"
	}
	api.WriteError(w, errNoNode)
	return "unavailable"
}

// forward sends r to b with body, bounded by ProxyTimeout and by the
// client's own context.
func (g *Gateway) forward(r *http.Request, b *backend, body []byte) (*http.Response, error) {
	b.outstanding.Add(1)
	defer b.outstanding.Add(-1)
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.ProxyTimeout)
	req, err := http.NewRequestWithContext(ctx, r.Method, b.url+r.URL.RequestURI(), nil)
	if err != nil {
		cancel()
		return nil, err
	}
	if body != nil {
		// A write (even a bodiless DELETE) is not replayable: net/http would
		// otherwise resend a keyed write on a fresh connection by itself
		// after a reused one failed, and a refusal of that resend would look
		// like "never sent".
		req.Body, req.GetBody, req.ContentLength = io.NopCloser(bytes.NewReader(body)), nil, int64(len(body))
	}
	for _, h := range []string{"Content-Type", IdempotencyHeader} {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	g.passIdentity(r, req, body)
	resp, err := g.client.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// passIdentity tells the node who the client is: a signed identity when
// this gateway authenticated the client and holds the cluster key, else the
// client's own Authorization header for the node to check.
func (g *Gateway) passIdentity(r, req *http.Request, body []byte) {
	id, ok := auth.FromContext(r.Context())
	if ok && id.Via != auth.ViaOpen && id.Role != auth.RoleNone && !g.cfg.Keyring.Empty() {
		auth.SignForwarded(req, g.cfg.Keyring.Primary(), id, body)
		return
	}
	if v := r.Header.Get("Authorization"); v != "" {
		req.Header.Set("Authorization", v)
	}
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// notSent reports whether err means the request never reached the node: the
// connection was refused or could not be made.
func notSent(err error) bool {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func copyResponse(w http.ResponseWriter, resp *http.Response) {
	defer resp.Body.Close()
	for _, h := range []string{"Content-Type", "Allow", api.ReplayedHeader} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, io.LimitReader(resp.Body, 1<<20))
}
