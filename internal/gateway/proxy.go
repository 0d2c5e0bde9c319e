package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

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
		resp, err := g.forward(r.Context(), r, r.URL.RequestURI(), b, body)
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
		if resp.status == http.StatusServiceUnavailable && !keyed {
			g.markDown(b, fmt.Errorf("answered 503"))
			continue // the node refused before applying anything
		}
		copyResponse(w, resp)
		if resp.status/100 == 2 {
			return "ok"
		}
		return "error"
	}
	api.WriteError(w, errNoNode)
	return "unavailable"
}

// forward sends r's method, uri (a request URI) and body to b, with r's
// headers that nodes use, bounded by ProxyTimeout and by ctx (r's context or
// a shorter one).
func (g *Gateway) forward(ctx context.Context, r *http.Request, uri string, b *backend, body []byte) (nodeResponse, error) {
	b.outstanding.Add(1)
	defer b.outstanding.Add(-1)
	var buf [8]nodeHeader
	hdr := buf[:0]
	for _, h := range []string{"Content-Type", IdempotencyHeader} {
		if v := r.Header.Get(h); v != "" {
			hdr = append(hdr, nodeHeader{h, v})
		}
	}
	hdr, err := g.passIdentity(r, r.Method, b.url, uri, body, hdr)
	if err != nil {
		return nodeResponse{}, err
	}
	if strings.HasPrefix(b.url, "https://") {
		return g.forwardTLS(ctx, r.Method, b.url+uri, hdr, body)
	}
	return b.conns.do(ctx, b.url, r.Method, uri, hdr, body, time.Now().Add(g.cfg.ProxyTimeout))
}

// forwardTLS is forward to an https:// node, over net/http.
func (g *Gateway) forwardTLS(ctx context.Context, method, url string, hdr []nodeHeader, body []byte) (nodeResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.ProxyTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return nodeResponse{}, err
	}
	if body != nil {
		// A write (even a bodiless DELETE) is not replayable: net/http would
		// otherwise resend a keyed write on a fresh connection by itself
		// after a reused one failed, and a refusal of that resend would look
		// like "never sent".
		req.Body, req.GetBody, req.ContentLength = io.NopCloser(bytes.NewReader(body)), nil, int64(len(body))
	}
	for _, h := range hdr {
		req.Header.Set(h.name, h.value)
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return nodeResponse{}, err
	}
	defer resp.Body.Close()
	out := nodeResponse{status: resp.StatusCode, contentType: resp.Header.Get("Content-Type"),
		allow: resp.Header.Get("Allow"), replayed: resp.Header.Get(api.ReplayedHeader)}
	if out.body, err = io.ReadAll(io.LimitReader(resp.Body, maxNodeBody)); err != nil {
		return nodeResponse{}, err
	}
	return out, nil
}

// passIdentity tells the node who the client is: a signed identity when
// this gateway authenticated the client and holds the cluster key, else the
// client's own Authorization header for the node to check. It appends those
// headers to hdr; method, base+uri and body are the request to the node.
func (g *Gateway) passIdentity(r *http.Request, method, base, uri string, body []byte, hdr []nodeHeader) ([]nodeHeader, error) {
	id, ok := auth.FromContext(r.Context())
	if ok && id.Via != auth.ViaOpen && id.Role != auth.RoleNone && !g.cfg.Keyring.Empty() {
		// The signature covers the request as net/http would send it.
		req, err := http.NewRequest(method, base+uri, nil)
		if err != nil {
			return hdr, err
		}
		for _, h := range hdr {
			req.Header.Set(h.name, h.value)
		}
		auth.SignForwarded(req, g.cfg.Keyring.Primary(), id, body)
		for _, name := range []string{auth.HeaderRole, auth.HeaderName, auth.HeaderKey, auth.HeaderMAC} {
			hdr = append(hdr, nodeHeader{name, req.Header.Get(name)})
		}
		return hdr, nil
	}
	if v := r.Header.Get("Authorization"); v != "" {
		hdr = append(hdr, nodeHeader{"Authorization", v})
	}
	return hdr, nil
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

func copyResponse(w http.ResponseWriter, resp nodeResponse) {
	h := w.Header()
	for _, kv := range [...][2]string{{"Content-Type", resp.contentType}, {"Allow", resp.allow}, {api.ReplayedHeader, resp.replayed}} {
		if kv[1] != "" {
			h[kv[0]] = []string{kv[1]}
		}
	}
	w.WriteHeader(resp.status)
	w.Write(resp.body)
}
