package discovery

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// ErrUnreachable is returned when no discovery server answered.
var ErrUnreachable = errors.New("discovery: no server answered")

// Client registers one node with one or more discovery servers and reads
// their peer lists. Its methods are safe for concurrent use.
type Client struct {
	urls []string
	self Entry
	http *http.Client
}

// NewClient returns a client announcing self to every URL.
func NewClient(urls []string, self Entry, timeout time.Duration) *Client {
	clean := make([]string, 0, len(urls))
	for _, u := range urls {
		u = strings.TrimRight(u, "/")
		if !strings.Contains(u, "://") {
			u = "http://" + u
		}
		clean = append(clean, u)
	}
	return &Client{urls: clean, self: self, http: &http.Client{Timeout: timeout}}
}

// Register announces the node to every server; it fails only if none answered.
func (c *Client) Register(ctx context.Context) error {
	return c.each(func(u string) error { return c.post(ctx, u+"/register") })
}

// Heartbeat refreshes the node's entry on every server, registering again
// where the server does not know it (after the server restarted, say).
func (c *Client) Heartbeat(ctx context.Context) error {
	return c.each(func(u string) error {
		err := c.post(ctx, u+"/heartbeat")
		if errors.Is(err, errUnknownID) {
			err = c.post(ctx, u+"/register")
		}
		return err
	})
}

// Peers returns the union of the servers' live entries, without this node.
func (c *Client) Peers(ctx context.Context) ([]Entry, error) {
	seen := map[string]bool{c.self.ID: true}
	var out []Entry
	err := c.each(func(u string) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u+"/peers", nil)
		if err != nil {
			return err
		}
		resp, err := c.http.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s/peers: %s", u, resp.Status)
		}
		var es []Entry
		if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&es); err != nil {
			return fmt.Errorf("GET %s/peers: %w", u, err)
		}
		for _, e := range es {
			if !seen[e.ID] && validate(&e) == nil {
				seen[e.ID] = true
				out = append(out, e)
			}
		}
		return nil
	})
	return out, err
}

// each calls f for every server and succeeds if any call did.
func (c *Client) each(f func(url string) error) error {
	var errs []error
	for _, u := range c.urls {
		if err := f(u); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == len(c.urls) {
		return fmt.Errorf("%w: %w", ErrUnreachable, errors.Join(errs...))
	}
	return nil
}

func (c *Client) post(ctx context.Context, url string) error {
	body, _ := json.Marshal(struct {
		ID         string `json:"id"`
		Name       string `json:"name"`
		GossipAddr string `json:"gossip_addr"`
		HTTPAddr   string `json:"http_addr"`
	}{c.self.ID, c.self.Name, c.self.GossipAddr, c.self.HTTPAddr})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch resp.StatusCode {
	case http.StatusOK:
		return nil
	case http.StatusNotFound:
		return errUnknownID
	}
	return fmt.Errorf("POST %s: %s: %s", url, resp.Status, bytes.TrimSpace(msg))
}

// SetTLS makes the client verify https:// servers with cfg (a private CA,
// say). Call it before first use.
func (c *Client) SetTLS(cfg *tls.Config) {
	c.http.Transport = &http.Transport{TLSClientConfig: cfg, Proxy: http.ProxyFromEnvironment}
}
