package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dcounter/dcounter/internal/tlsfiles"
)

const defaultAddr = "http://127.0.0.1:8080"

const clientHelp = `
Talks to a node's (or the gateway's) client API. KEY defaults to "default".
Prints the counter's value after the operation. Exits 1 if the server
refused the request or could not be reached.

Give an https:// URL for a server with --tls-cert (--ca names the CA its
certificate is signed by, if not a public one), and --token (better:
DCOUNTER_TOKEN) for a server with --auth-file.
`

// conn are the flags every client verb shares: how to reach and prove
// ourselves to the server.
type conn struct {
	token, ca, cert, key string
}

func (c *conn) register(fs *flagSet) {
	fs.StringVar(&c.token, "token", "", "bearer `token` for a server with --auth-file; prefer the environment variable, command lines are visible to other users")
	fs.StringVar(&c.ca, "ca", "", "PEM CA `file` to verify an https:// server with (default: the system's roots)")
	fs.StringVar(&c.cert, "client-cert", "", "PEM certificate `file` to present to a server with --tls-client-ca (with --client-key)")
	fs.StringVar(&c.key, "client-key", "", "PEM private key `file` for --client-cert")
}

func clientVerb(verb string) func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
		syn := verb + " [KEY] [--by N] [--addr URL]"
		if verb == "get" {
			syn = "get [KEY] [--addr URL]"
		}
		fs := newFlagSet(verb, syn, clientHelp, stderr)
		addr := fs.String("addr", defaultAddr, "`URL` of a node or gateway")
		timeout := fs.Duration("timeout", 5*time.Second, "request `timeout`")
		var cn conn
		cn.register(fs)
		var by uint64 = 1
		if verb != "get" {
			fs.Uint64Var(&by, "by", 1, "positive `amount` to add or subtract")
		}
		pos, code, ok := fs.parseOrExit(args, stdout)
		if !ok {
			return code
		}
		if len(pos) > 1 {
			fmt.Fprintf(stderr, "dcounter %s: want at most one KEY, got %d arguments\n", verb, len(pos))
			return exitUsage
		}
		key := "default"
		if len(pos) == 1 {
			key = pos[0]
		}
		if by == 0 {
			fmt.Fprintf(stderr, "dcounter %s: --by must be a positive integer\n", verb)
			return exitUsage
		}
		path := "/counters/" + url.PathEscape(key)
		method, body := http.MethodGet, ""
		switch verb {
		case "inc":
			method, path, body = http.MethodPost, path+"/increment", `{"amount":`+strconv.FormatUint(by, 10)+`}`
		case "dec":
			method, path, body = http.MethodPost, path+"/decrement", `{"amount":`+strconv.FormatUint(by, 10)+`}`
		}
		var resp struct {
			Key   string `json:"key"`
			Value int64  `json:"value"`
		}
		if err := cn.call(ctx, *timeout, method, *addr, path, body, &resp); err != nil {
			fmt.Fprintf(stderr, "dcounter %s: %v\n", verb, err)
			return 1
		}
		fmt.Fprintln(stdout, resp.Value)
		return 0
	}
}

func runNodes(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("nodes", "nodes [--addr URL]", "Lists the members that the node (or gateway) at --addr sees, with their state.", stderr)
	addr := fs.String("addr", defaultAddr, "`URL` of a node or gateway")
	asJSON := fs.Bool("json", false, "print the raw JSON")
	var cn conn
	cn.register(fs)
	if _, code, ok := fs.parseOrExit(args, stdout); !ok {
		return code
	}
	var raw json.RawMessage
	if err := cn.call(ctx, 5*time.Second, http.MethodGet, *addr, "/nodes", "", &raw); err != nil {
		fmt.Fprintf(stderr, "dcounter nodes: %v\n", err)
		return 1
	}
	var rows []map[string]any
	if *asJSON || json.Unmarshal(raw, &rows) != nil {
		fmt.Fprintln(stdout, string(raw))
		return 0
	}
	cols := []string{"name", "id", "status", "gossip_addr", "http_addr", "value"}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	var present []string
	for _, c := range cols {
		for _, r := range rows {
			if _, ok := r[c]; ok {
				present = append(present, c)
				break
			}
		}
	}
	fmt.Fprintln(tw, strings.ToUpper(strings.Join(present, "\t")))
	for _, r := range rows {
		var cells []string
		for _, c := range present {
			v := r[c]
			if v == nil {
				v = "-"
			}
			cells = append(cells, fmt.Sprint(v))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	tw.Flush()
	return 0
}

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("status", "status [--addr URL]", "Shows the health summary of the node (or gateway) at --addr. Exits 1 unless it is healthy.", stderr)
	addr := fs.String("addr", defaultAddr, "`URL` of a node or gateway")
	var cn conn
	cn.register(fs)
	if _, code, ok := fs.parseOrExit(args, stdout); !ok {
		return code
	}
	var raw json.RawMessage
	err := cn.call(ctx, 5*time.Second, http.MethodGet, *addr, "/health", "", &raw)
	if len(raw) > 0 {
		var v any
		if json.Unmarshal(raw, &v) == nil {
			b, _ := json.MarshalIndent(v, "", "  ")
			fmt.Fprintln(stdout, string(b))
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "dcounter status: %v\n", err)
		return 1
	}
	return 0
}

func runHealth(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("health", "health [URL]", "Exits 0 if GET URL/health answers 200, else 1. For container health checks; prints nothing on success.", stderr)
	timeout := fs.Duration("timeout", 2*time.Second, "request `timeout`")
	var cn conn
	cn.register(fs)
	pos, code, ok := fs.parseOrExit(args, stdout)
	if !ok {
		return code
	}
	addr := defaultAddr
	if len(pos) > 0 {
		addr = pos[0]
	}
	var raw json.RawMessage
	if err := cn.call(ctx, *timeout, http.MethodGet, addr, "/health", "", &raw); err != nil {
		fmt.Fprintf(stderr, "dcounter health: %v\n", err)
		return 1
	}
	return 0
}

func runKeygen(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("keygen", "keygen", "Prints a new random 32-byte key, base64-encoded, for --cluster-key / DCOUNTER_CLUSTER_KEY.", stderr)
	if _, code, ok := fs.parseOrExit(args, stdout); !ok {
		return code
	}
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		fmt.Fprintf(stderr, "dcounter keygen: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, base64.StdEncoding.EncodeToString(k[:]))
	return 0
}

// call sends one request and decodes a JSON answer into out; a non-2xx
// answer becomes an error carrying the server's {"error":...} message.
func (c conn) call(ctx context.Context, timeout time.Duration, method, base, path, body string, out any) error {
	base = strings.TrimRight(base, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	client := http.DefaultClient
	if c.ca != "" || c.cert != "" || c.key != "" {
		tc, err := tlsfiles.ClientConfig(c.ca)
		if err != nil {
			return fmt.Errorf("--ca: %w", err)
		}
		if c.cert != "" || c.key != "" {
			pair, err := tls.LoadX509KeyPair(c.cert, c.key)
			if err != nil {
				return fmt.Errorf("--client-cert/--client-key: %w", err)
			}
			tc.Certificates = []tls.Certificate{pair}
		}
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: tc, Proxy: http.ProxyFromEnvironment}}
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			if raw, ok := out.(*json.RawMessage); ok {
				*raw = b
			}
			return fmt.Errorf("%s: %s", resp.Status, e.Error)
		}
		if raw, ok := out.(*json.RawMessage); ok {
			*raw = b
		}
		return fmt.Errorf("%s", resp.Status)
	}
	return json.Unmarshal(b, out)
}
