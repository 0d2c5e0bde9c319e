// Package discoveryclient is how a node or a gateway talks to discovery
// servers: register, heartbeat, and read the live peers. It tolerates any
// number of servers being down as long as one answers.
//
// With a keyring, every request is signed with the primary key after a
// fresh challenge from the server, and every answer must carry the
// server's MAC (the scheme is in package discovery's doc): a server or
// anyone on the path without the key can neither register for us, replay
// our requests, nor feed us a forged peer list.
package discoveryclient

import (
	"bytes"
	"context"
	"crypto/hmac"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/dcounter/dcounter/internal/clusterkey"
	"github.com/dcounter/dcounter/internal/discovery"
)

// ErrUnreachable is returned when no discovery server answered.
var ErrUnreachable = errors.New("discoveryclient: no server answered")

// errUnknownID is a server's 404 to a heartbeat: register again.
var errUnknownID = errors.New("discoveryclient: server does not know this id")

// Entry is one registered node, as servers list it.
type Entry = discovery.Entry

// Config configures a Client. Zero fields take the defaults stated.
type Config struct {
	// URLs are the discovery servers (http://host:port; a bare host:port
	// means http).
	URLs []string
	// Self is what Register and Heartbeat announce; a client that only
	// reads (a gateway) leaves it empty.
	Self Entry
	// HTTP sends the requests; give one with a TLS configuration to use
	// https URLs with a private CA. Default: a client with a 2s timeout.
	HTTP *http.Client
	// Keyring, if not empty, signs every request with its primary key and
	// verifies every answer (the servers need the same --cluster-key).
	Keyring clusterkey.Keyring
}

// Client registers one node with one or more discovery servers and reads
// their peer lists. Its methods are safe for concurrent use.
type Client struct {
	urls []string
	self Entry
	http *http.Client
	keys clusterkey.Keyring
}

// New returns a client for cfg.
func New(cfg Config) *Client {
	clean := make([]string, 0, len(cfg.URLs))
	for _, u := range cfg.URLs {
		u = strings.TrimRight(u, "/")
		if !strings.Contains(u, "://") {
			u = "http://" + u
		}
		clean = append(clean, u)
	}
	hc := cfg.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 2 * time.Second}
	}
	return &Client{urls: clean, self: cfg.Self, http: hc, keys: cfg.Keyring}
}

// Register announces the node to every server; it fails only if none answered.
func (c *Client) Register(ctx context.Context) error {
	return c.each(func(u string) error { return c.post(ctx, u, "/register") })
}

// Heartbeat refreshes the node's entry on every server, registering again
// where the server does not know it (after the server restarted, say).
func (c *Client) Heartbeat(ctx context.Context) error {
	return c.each(func(u string) error {
		err := c.post(ctx, u, "/heartbeat")
		if errors.Is(err, errUnknownID) {
			err = c.post(ctx, u, "/register")
		}
		return err
	})
}

// Peers returns the union of the servers' live entries, without this node.
func (c *Client) Peers(ctx context.Context) ([]Entry, error) {
	seen := map[string]bool{c.self.ID: true}
	var out []Entry
	err := c.each(func(u string) error {
		status, body, err := c.do(ctx, http.MethodGet, u, "/peers", nil)
		if err != nil {
			return err
		}
		if status != http.StatusOK {
			return fmt.Errorf("GET %s/peers: %d %s", u, status, bytes.TrimSpace(body))
		}
		var es []Entry
		if err := json.Unmarshal(body, &es); err != nil {
			return fmt.Errorf("GET %s/peers: %w", u, err)
		}
		for _, e := range es {
			if !seen[e.ID] && discovery.Validate(&e) == nil {
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

func (c *Client) post(ctx context.Context, base, path string) error {
	body, _ := json.Marshal(struct {
		ID         string `json:"id"`
		Name       string `json:"name"`
		GossipAddr string `json:"gossip_addr"`
		HTTPAddr   string `json:"http_addr"`
	}{c.self.ID, c.self.Name, c.self.GossipAddr, c.self.HTTPAddr})
	status, msg, err := c.do(ctx, http.MethodPost, base, path, body)
	if err != nil {
		return err
	}
	switch status {
	case http.StatusOK:
		return nil
	case http.StatusNotFound:
		return errUnknownID
	}
	return fmt.Errorf("POST %s%s: %d %s: %s", base, path, status, http.StatusText(status), bytes.TrimSpace(msg))
}

// maxResponse bounds what is read of an answer: a peer list of MaxEntries
// entries fits easily.
const maxResponse = 16 << 20

// ErrAuth reports an answer that failed authentication, or a server
// that cannot authenticate.
var ErrAuth = errors.New("discoveryclient: authentication failed")

// do sends one request and returns the status and body of the answer,
// signed and verified when the client has a keyring.
func (c *Client) do(ctx context.Context, method, base, path string, body []byte) (int, []byte, error) {
	if c.keys.Empty() {
		status, _, b, err := c.send(ctx, method, base, path, body, "")
		return status, b, err
	}
	nonce, err := c.challenge(ctx, base)
	if err != nil {
		return 0, nil, err
	}
	k := c.keys.Primary()
	authz := discovery.Authorization(k, nonce, discovery.RequestMAC(k, method, path, nonce, body))
	status, h, b, err := c.send(ctx, method, base, path, body, authz)
	if err != nil {
		return 0, nil, err
	}
	if status == http.StatusUnauthorized {
		return 0, nil, fmt.Errorf("%w: %s %s%s refused our MAC (is the server's --cluster-key the same?): %s",
			ErrAuth, method, base, path, bytes.TrimSpace(b))
	}
	mac, err := base64.RawURLEncoding.DecodeString(h.Get(discovery.ResponseMACHeader))
	if err != nil || !hmac.Equal(mac, discovery.ResponseMAC(k, nonce, status, b)) {
		return 0, nil, fmt.Errorf("%w: %s %s%s: the answer (%d) is not signed with our key", ErrAuth, method, base, path, status)
	}
	return status, b, nil
}

// challenge gets a fresh nonce from the server at base.
func (c *Client) challenge(ctx context.Context, base string) (discovery.Nonce, error) {
	status, _, b, err := c.send(ctx, http.MethodPost, base, "/challenge", nil, "")
	if err != nil {
		return discovery.Nonce{}, err
	}
	switch status {
	case http.StatusOK:
	case http.StatusNotFound:
		return discovery.Nonce{}, fmt.Errorf("%w: %s has no --cluster-key (it issues no challenges)", ErrAuth, base)
	default:
		return discovery.Nonce{}, fmt.Errorf("POST %s/challenge: %d %s", base, status, bytes.TrimSpace(b))
	}
	var ch struct{ Nonce string }
	if err := json.Unmarshal(b, &ch); err != nil {
		return discovery.Nonce{}, fmt.Errorf("POST %s/challenge: %w", base, err)
	}
	n, err := discovery.ParseNonce(ch.Nonce)
	if err != nil {
		return discovery.Nonce{}, fmt.Errorf("POST %s/challenge: %w", base, err)
	}
	return n, nil
}

// send sends one request as is.
func (c *Client) send(ctx context.Context, method, base, path string, body []byte, authz string) (int, http.Header, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s%s: %w", method, base, path, err)
	}
	return resp.StatusCode, resp.Header, b, nil
}
