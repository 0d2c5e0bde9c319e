// Package ui serves dcounter's web dashboard at /ui: a page of plain HTML,
// CSS and JavaScript embedded in the binary (it works offline, no build step)
// that polls the client API every second and shows the members, one key's
// value on every node, the write rate and latency, and membership events.
//
// Invariants: the files under /ui/ are the same for everyone and carry no
// data, so they are served without authentication; every piece of data the
// page shows comes from an authenticated route — the client API's own
// (/nodes, /metrics, /counters/K) or the JSON routes under /ui/api/, which
// sit behind the same api.Authorize as the client API and need the read
// role. The page keeps a token, if the user gives one, in sessionStorage
// and sends it as Authorization: Bearer; it never puts it in a URL.
package ui

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"strings"

	"github.com/dcounter/dcounter/internal/api"
	"github.com/dcounter/dcounter/internal/auth"
	"github.com/dcounter/dcounter/internal/crdt"
	"github.com/dcounter/dcounter/internal/service"
)

// Prefix is where the dashboard lives; APIPrefix is where its JSON routes do.
const (
	Prefix    = "/ui"
	APIPrefix = "/ui/api/"
)

//go:embed static
var static embed.FS

// ErrNoNode is answered when no healthy node can serve the members.
var ErrNoNode = service.Unavailable(errors.New("ui: no healthy node"))

// NodeValue is one node's answer for a key, as the gateway got it.
type NodeValue struct {
	URL    string `json:"url"`
	ID     string `json:"id,omitempty"`
	Name   string `json:"name,omitempty"`
	Status string `json:"status"`          // the gateway's view of the node: healthy, unhealthy, ...
	Value  *int64 `json:"value"`           // null when the node did not answer
	Error  string `json:"error,omitempty"` // coarse: unreachable, or the node's HTTP status
}

// KeyValues is GET /ui/api/key's answer.
type KeyValues struct {
	Key   string      `json:"key"`
	Nodes []NodeValue `json:"nodes"`
	// Converged is true when every healthy node answered and all the
	// answers are equal.
	Converged bool `json:"converged"`
}

// Cluster is what the gateway offers the dashboard. Each call acts as the
// caller of r (its identity or token is passed on to the nodes), so the
// dashboard can show nothing the caller could not read through the API.
type Cluster interface {
	// ReadEach reads key on every node the gateway knows, concurrently.
	ReadEach(r *http.Request, key string) []NodeValue
	// Members returns one healthy node's GET /nodes answer: its status
	// code and body.
	Members(r *http.Request) (int, []byte, error)
}

// Mount serves the dashboard's files under /ui and passes every other
// request, including /ui/api/, to next (the authorised client API). Mount
// it outside api.Authorize: the files carry no data.
func Mount(next http.Handler) http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.StripPrefix(Prefix+"/", http.FileServer(http.FS(sub)))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if p != Prefix && !strings.HasPrefix(p, Prefix+"/") || strings.HasPrefix(p, APIPrefix) {
			next.ServeHTTP(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			api.WriteError(w, fmt.Errorf("%w: %s %s (use GET, HEAD)", api.ErrMethod, r.Method, p))
			return
		}
		if p == Prefix {
			http.Redirect(w, r, Prefix+"/", http.StatusMovedPermanently)
			return
		}
		h := w.Header()
		// Same-origin only: no inline script, no framing (clickjacking),
		// no fetches anywhere but this server.
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}

// MountAPI serves the dashboard's JSON routes under /ui/api/ from c and
// passes every other request to next. Mount it inside api.Authorize, which
// authenticates the caller (an unknown route still needs a valid token)
// and puts the identity in the context; these routes then need the read
// role, as GET /counters/K does. Without authorisation (no auth file) they
// are as open as the API.
func MountAPI(next http.Handler, c Cluster) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, APIPrefix) {
			next.ServeHTTP(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			api.WriteError(w, fmt.Errorf("%w: %s %s (use GET, HEAD)", api.ErrMethod, r.Method, r.URL.Path))
			return
		}
		if id, ok := auth.FromContext(r.Context()); ok {
			if need := api.RequiredRole(api.RouteGet); !id.Role.Allows(need) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="dcounter", error="insufficient_scope"`)
				api.WriteError(w, fmt.Errorf("%w: %s needs the %s role; this token has %s", auth.ErrForbidden, r.URL.Path, need, id.Role))
				return
			}
		}
		switch strings.TrimPrefix(r.URL.Path, APIPrefix) {
		case "key":
			key := r.URL.Query().Get("key")
			if key == "" {
				key = crdt.DefaultKey
			}
			if err := crdt.ValidKey(key); err != nil {
				api.WriteError(w, err)
				return
			}
			nodes := c.ReadEach(r, key)
			api.WriteJSON(w, http.StatusOK, KeyValues{Key: key, Nodes: nodes, Converged: converged(nodes)})
		case "members":
			// The members are the cluster's layout: /nodes needs admin,
			// and the node that answers checks the caller's role itself.
			status, body, err := c.Members(r)
			if err != nil {
				api.WriteError(w, err)
				return
			}
			if !json.Valid(body) {
				api.WriteJSON(w, http.StatusBadGateway, api.ErrorResponse{Error: "node answered a body that is not JSON"})
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			w.Write(body)
		default:
			api.WriteError(w, fmt.Errorf("%w: %s", api.ErrNotFound, r.URL.Path))
		}
	})
}

// converged reports whether every healthy node answered the same value.
func converged(nodes []NodeValue) bool {
	var first *int64
	for _, n := range nodes {
		if n.Status != "healthy" {
			continue
		}
		if n.Value == nil {
			return false
		}
		if first == nil {
			first = n.Value
		} else if *first != *n.Value {
			return false
		}
	}
	return first != nil
}
