package api

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/dcounter/dcounter/internal/auth"
	"github.com/dcounter/dcounter/internal/service"
)

// BearerAuthenticator authenticates a request that carries no forwarded
// identity, by its Authorization header alone (auth.Guard does).
type BearerAuthenticator interface {
	AuthenticateBearer(authorization string) (auth.Identity, error)
}

var _ BearerAuthenticator = (*auth.Guard)(nil)

// QuickRequest is what Quick needs of an HTTP request. Its strings must not
// alias memory the server reuses: keys and Idempotency-Keys outlive the
// request.
type QuickRequest struct {
	Method        string
	Path          string // the target's path, percent-escapes kept
	Body          []byte // read in full; Quick keeps no reference to it
	Authorization string // "" if none
	Idempotency   string // the Idempotency-Key header, "" if none
	Forwarded     bool   // it carries a forwarded-identity header
}

// QuickAnswer is Quick's answer: a JSON body (Content-Type
// application/json) with Status, and the header Idempotent-Replayed: true
// when Replayed.
type QuickAnswer struct {
	Status   int
	Replayed bool
	Body     []byte
}

// Quick answers the requests that are nearly all of a node's traffic, a
// counter's GET and its increments and decrements, without a net/http
// request: exactly as the handler of NewHandler (behind Authorize when Auth
// is set) would. It declines, before it has done anything, every request it
// would answer with an error of its own (a bad route, key, body, token or
// Idempotency-Key; forwarded identity, which needs the whole request), so
// that the full handler answers those; a failure of the service it answers
// itself, as the handler does.
type Quick struct {
	Service service.Service
	// Auth, if set, authenticates as Authorize's Authenticator does; nil
	// when the API is served without Authorize.
	Auth BearerAuthenticator
	Log  *slog.Logger // internal failures; nil: none
}

// Answer answers r into buf (whose bytes it may reuse), or reports false
// when the full handler must answer it.
func (q *Quick) Answer(ctx context.Context, r *QuickRequest, buf []byte) (QuickAnswer, bool) {
	rt, _, err := MatchPath(r.Method, r.Path)
	if err != nil || !(rt.Kind == RouteAdd || rt.Kind == RouteGet && r.Method == http.MethodGet) {
		return QuickAnswer{}, false
	}
	wr := WriteRequest{Amount: 1}
	if rt.Kind == RouteAdd {
		if len(r.Body) > 0 {
			if wr, err = ParseWriteBody(r.Body); err != nil {
				return QuickAnswer{}, false
			}
		}
		if CheckIdempotencyKey(r.Idempotency) != nil {
			return QuickAnswer{}, false
		}
	}
	if q.Auth != nil {
		if r.Forwarded {
			return QuickAnswer{}, false
		}
		id, err := q.Auth.AuthenticateBearer(r.Authorization)
		if err != nil || !id.Role.Allows(RequiredRole(rt.Kind)) {
			return QuickAnswer{}, false
		}
		ctx = auth.NewContext(ctx, id)
	}
	var (
		c        service.Counter
		replayed bool
	)
	if rt.Kind == RouteGet {
		c, err = q.Service.Get(ctx, rt.Key)
	} else {
		c, replayed, err = q.Service.Add(ctx, rt.Key, rt.Sign*wr.Amount, wr.Options(r.Idempotency))
	}
	if err != nil {
		if q.Log != nil {
			logFailure(q.Log, r.Method, unescapedPath(r.Path), err)
		}
		return QuickAnswer{Status: service.HTTPStatus(err), Body: appendError(buf, err)}, true
	}
	return QuickAnswer{Status: http.StatusOK, Replayed: replayed, Body: appendCounterOf(buf, rt.Key, c)}, true
}

// appendError appends err's {"error":…} body, as WriteError sends it: an
// ErrorResponse as encoding/json writes it, and a newline.
func appendError(b []byte, err error) []byte {
	b = append(b, `{"error":`...)
	b = appendJSONString(b, service.Message(err))
	return append(b, "}\n"...)
}

// ErrorBody is the body WriteError sends for err.
func ErrorBody(err error) []byte { return appendError(nil, err) }
