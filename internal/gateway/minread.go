package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/dcounter/dcounter/internal/api"
	"github.com/dcounter/dcounter/internal/service"
)

// A read with ?min=N (GET /counter?min=N, GET /counters/{key}?min=N) is
// answered only by a node whose value of the key is at least N: the key's
// nodes are asked in its rendezvous order (the home first), again and again
// for up to Config.MinReadWait while none has reached N (gossip is on its
// way), and then the gateway answers 503 naming the highest value it saw.
// A client that got V back from a write and reads with ?min=V sees its write
// or an error, never a value from before it — as long as nobody decrements
// the counter: a decrement by someone else can keep every node below V, and
// the read then fails although each node has the write.

// MinValueHeader carries, on a ?min read that no node could answer, the
// highest value any node reported (absent when none answered).
const MinValueHeader = "X-Dcounter-Highest-Value"

// minPause is the pause between two rounds over the nodes of a ?min read.
const minPause = 20 * time.Millisecond

// ErrMinNotReached is the answer (503) to a ?min read that no node could
// serve within the wait.
var ErrMinNotReached = errors.New("gateway: minimum not reached")

// minParam returns r's ?min, if it has one.
func minParam(r *http.Request) (int64, bool, error) {
	q := r.URL.Query()
	if !q.Has("min") {
		return 0, false, nil
	}
	min, err := strconv.ParseInt(q.Get("min"), 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("%w: min=%q: want an integer", api.ErrBadQuery, q.Get("min"))
	}
	return min, true, nil
}

// readMin serves a ?min read of key.
func (g *Gateway) readMin(w http.ResponseWriter, r *http.Request, key string, min int64) string {
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.MinReadWait)
	defer cancel()
	// The node answers the plain read (?min is the gateway's), and no
	// node's answer is awaited past the wait.
	u := *r.URL
	u.RawQuery = ""
	uri := u.RequestURI()
	var (
		highest  int64
		answered bool
	)
	for {
		for _, b := range g.order(key) {
			resp, err := g.forward(ctx, r, uri, b, nil)
			if err != nil {
				if r.Context().Err() != nil {
					return "client_gone"
				}
				if notSent(err) && ctx.Err() == nil {
					g.markDown(b, err) // not when it was the wait that ran out
				}
				continue // a read: safe to ask the next node
			}
			if resp.status != http.StatusOK {
				continue
			}
			var c api.CounterResponse
			if json.Unmarshal(resp.body, &c) != nil {
				continue
			}
			if !answered || c.Value > highest {
				highest, answered = c.Value, true
			}
			if c.Value >= min {
				if resp.contentType != "" {
					w.Header().Set("Content-Type", resp.contentType)
				}
				w.WriteHeader(http.StatusOK)
				w.Write(resp.body)
				return "ok"
			}
		}
		t := time.NewTimer(minPause)
		select {
		case <-ctx.Done():
			t.Stop()
			if r.Context().Err() != nil {
				return "client_gone"
			}
			msg := fmt.Errorf("%w: no node of counter %q reached %d within %s (none answered)", ErrMinNotReached, key, min, g.cfg.MinReadWait)
			if answered {
				w.Header().Set(MinValueHeader, strconv.FormatInt(highest, 10))
				msg = fmt.Errorf("%w: no node of counter %q reached %d within %s (highest value seen: %d)", ErrMinNotReached, key, min, g.cfg.MinReadWait, highest)
			}
			api.WriteError(w, service.Unavailable(msg))
			return "unavailable"
		case <-t.C:
		}
	}
}
