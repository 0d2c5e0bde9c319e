package gateway

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/dcounter/dcounter/internal/api"
)

// TestReadEach: the dashboard's value of a key on every node comes from
// each healthy node, with the caller's token passed on; a node out of
// rotation is listed with its coarse state and not asked.
func TestReadEach(t *testing.T) {
	nodes := newFakeNodes(t, "a", "b", "c")
	tokens := make(chan string, 8)
	for i, n := range nodes {
		v := int64(10 + i%2) // a and c agree, b does not
		n.setBehavior(func(_ *fakeNode, w http.ResponseWriter, r *http.Request, rec received) {
			tokens <- r.Header.Get("Authorization")
			api.WriteJSON(w, http.StatusOK, api.CounterResponse{Key: rec.Key, Value: v})
		})
	}
	tg := newTestGateway(t, Config{}, nodes...)
	nodes[2].health.Store(healthFail)
	tg.refreshUntil("c out of rotation", func(ns []NodeStatus) bool { return ns[2].Status == "unhealthy" })

	r := httptest.NewRequest(http.MethodGet, "/ui/api/key?key=k%2Fx", nil)
	r.Header.Set("Authorization", "Bearer reader")
	got := tg.ReadEach(r, "k/x")
	if len(got) != 3 {
		t.Fatalf("ReadEach: %+v, want 3 nodes", got)
	}
	for i, want := range []int64{10, 11} {
		if got[i].Value == nil || *got[i].Value != want || got[i].Status != "healthy" {
			t.Errorf("node %s: %+v, want healthy with %d", nodes[i].name, got[i], want)
		}
	}
	if got[2].Value != nil || got[2].Status != "unhealthy" || got[2].Error == "" {
		t.Errorf("node c: %+v, want unhealthy, no value, a coarse error", got[2])
	}
	if n := nodes[2].countKey("k/x"); n != 0 {
		t.Errorf("the unhealthy node was asked %d times", n)
	}
	for _, n := range nodes[:2] {
		if reqs := n.requests(); len(reqs) != 1 || reqs[0].URI != "/counters/k%2Fx" {
			t.Errorf("%s got %+v, want one GET /counters/k%%2Fx", n.name, reqs)
		}
	}
	for i := 0; i < 2; i++ {
		if tok := <-tokens; tok != "Bearer reader" {
			t.Errorf("a node saw Authorization %q, want the caller's", tok)
		}
	}

	nodes[0].setBehavior(func(_ *fakeNode, w http.ResponseWriter, r *http.Request, rec received) {
		api.WriteJSON(w, http.StatusOK, []map[string]string{{"name": "a", "status": "alive", "path": r.URL.Path}})
	})
	status, body, err := tg.Members(r)
	if err != nil || status != http.StatusOK || !strings.Contains(string(body), `"path":"/nodes"`) {
		t.Errorf("Members: %d %s %v, want node a's /nodes", status, body, err)
	}
}
