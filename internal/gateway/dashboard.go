package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"

	"github.com/dcounter/dcounter/internal/api"
	"github.com/dcounter/dcounter/internal/ui"
)

// The dashboard (package ui) asks the gateway for what only it can see:
// one key's value on every node.
var _ ui.Cluster = (*Gateway)(nil)

// dashboardReads bounds the nodes one dashboard request reads at once: a
// gateway may track a thousand.
const dashboardReads = 16

// ReadEach reads key on every known node at once, as the caller of r: the
// nodes see the caller's identity (or token), exactly as for a proxied
// read. Errors are coarse (unreachable, the node's status), as in /nodes.
func (g *Gateway) ReadEach(r *http.Request, key string) []ui.NodeValue {
	nodes := g.Nodes()
	out := make([]ui.NodeValue, len(nodes))
	var wg sync.WaitGroup
	sem := make(chan struct{}, dashboardReads)
	for i, n := range nodes {
		out[i] = ui.NodeValue{URL: n.URL, ID: n.ID, Name: n.Name, Status: n.Status}
		if n.Status != "healthy" {
			out[i].Error = n.Error
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func(v *ui.NodeValue) {
			defer func() { <-sem; wg.Done() }()
			var c api.CounterResponse
			status, body, err := g.getAs(r, v.URL, "/counters/"+url.PathEscape(key))
			switch {
			case err != nil:
				v.Error = stateUnreachable
			case status != http.StatusOK:
				v.Error = fmt.Sprintf("answered %d", status)
			case json.Unmarshal(body, &c) != nil:
				v.Error = stateUnhealthy
			default:
				v.Value = &c.Value
			}
		}(&out[i])
	}
	wg.Wait()
	return out
}

// Members returns a healthy node's GET /nodes, asked as the caller of r.
// It asks the first healthy node by name, the same one every time while it
// stays healthy: the dashboard derives membership events from successive
// answers, and two nodes' views can differ for a moment.
func (g *Gateway) Members(r *http.Request) (int, []byte, error) {
	for _, n := range g.Nodes() {
		if n.Status != "healthy" {
			continue
		}
		status, body, err := g.getAs(r, n.URL, "/nodes")
		if err != nil {
			return 0, nil, fmt.Errorf("%w: %s is %s", ui.ErrNoNode, n.URL, stateUnreachable)
		}
		return status, body, nil
	}
	return 0, nil, ui.ErrNoNode
}

// getAs sends GET base+path on behalf of r's caller, bounded by
// HealthTimeout.
func (g *Gateway) getAs(r *http.Request, base, path string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.HealthTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return 0, nil, err
	}
	hdr, err := g.passIdentity(r, http.MethodGet, base, path, nil, nil)
	if err != nil {
		return 0, nil, err
	}
	for _, h := range hdr {
		req.Header.Set(h.name, h.value)
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, body, err
}
