package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/dcounter/dcounter/internal/tlsfiles"
)

const defaultAddr = "http://127.0.0.1:8080"

const clientHelp = `
Talks to a node's (or the gateway's) client API. KEY defaults to "default".
Prints the counter's value after the operation (with --json, the server's
answer, which also carries ttl_ms while the key has an expiry). A key that
is not live (never written, deleted or expired) reads 0. Exits 1 if the
server refused the request or could not be reached, 2 on bad usage.
`

const writeTTLHelp = `
--ttl gives the key an expiry together with the write (atomically): only if
it has none yet, so that repeated writes within a window do not extend it
(a fixed-window rate limiter), or always with --ttl-always. Once expired a
key reads 0 and the next write counts from 0 again.
`

const connHelp = `
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

// client is what a counter verb needs: where the server is, how long to
// wait for it, and how to prove ourselves.
type client struct {
	conn
	addr    string
	timeout time.Duration
	json    bool
}

func (c *client) register(fs *flagSet) {
	fs.StringVar(&c.addr, "addr", defaultAddr, "`URL` of a node or gateway")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Second, "request `timeout`")
	fs.BoolVar(&c.json, "json", false, "print the server's JSON answer")
	c.conn.register(fs)
}

func (c *client) call(ctx context.Context, method, path, body string, out any) error {
	return c.conn.call(ctx, c.timeout, method, c.addr, path, body, out)
}

// counterAnswer is a counter route's answer.
type counterAnswer struct {
	Key     string `json:"key"`
	Value   int64  `json:"value"`
	TTLMs   int64  `json:"ttl_ms,omitempty"`
	Deleted *bool  `json:"deleted,omitempty"`
}

// ttlText prints an expiry: the time left, or "none".
func ttlText(ms int64) string {
	if ms <= 0 {
		return "none"
	}
	return (time.Duration(ms) * time.Millisecond).String()
}

func counterPath(key string) string { return "/counters/" + url.PathEscape(key) }

func clientVerb(verb string) func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
		syn := verb + " [KEY] [--by N] [--ttl DURATION [--ttl-always]] [--addr URL]"
		if verb == "get" {
			syn = "get [KEY] [--addr URL]"
		}
		help := clientHelp + writeTTLHelp + connHelp
		if verb == "get" {
			help = clientHelp + connHelp
		}
		fs := newFlagSet(verb, syn, help, stderr)
		var c client
		c.register(fs)
		var (
			by        uint64 = 1
			ttl       time.Duration
			ttlAlways bool
		)
		if verb != "get" {
			fs.Uint64Var(&by, "by", 1, "positive `amount` to add or subtract")
			fs.DurationVar(&ttl, "ttl", 0, "also expire the key this `duration` from now (whole milliseconds, e.g. 90s, 1h), if it has no expiry yet")
			fs.BoolVar(&ttlAlways, "ttl-always", false, "with --ttl: replace any expiry the key has")
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
		if err := checkTTL(ttl, true); err != nil {
			fmt.Fprintf(stderr, "dcounter %s: --ttl %v\n", verb, err)
			return exitUsage
		}
		if ttlAlways && ttl == 0 {
			fmt.Fprintf(stderr, "dcounter %s: --ttl-always needs --ttl\n", verb)
			return exitUsage
		}
		path := counterPath(key)
		method, body := http.MethodGet, ""
		if verb != "get" {
			method, path = http.MethodPost, path+map[string]string{"inc": "/increment", "dec": "/decrement"}[verb]
			body = `{"amount":` + strconv.FormatUint(by, 10)
			if ttl > 0 {
				body += `,"ttl_ms":` + strconv.FormatInt(ttl.Milliseconds(), 10)
				if ttlAlways {
					body += `,"ttl_mode":"always"`
				}
			}
			body += "}"
		}
		return c.counterVerb(ctx, verb, method, path, body, stdout, stderr, func(a counterAnswer) string {
			return strconv.FormatInt(a.Value, 10)
		})
	}
}

// counterVerb sends one counter request and prints text(answer), or the
// answer itself with --json.
func (c *client) counterVerb(ctx context.Context, verb, method, path, body string, stdout, stderr io.Writer, text func(counterAnswer) string) int {
	var raw json.RawMessage
	if err := c.call(ctx, method, path, body, &raw); err != nil {
		fmt.Fprintf(stderr, "dcounter %s: %v\n", verb, err)
		return 1
	}
	if c.json {
		fmt.Fprintln(stdout, string(raw))
		return 0
	}
	var a counterAnswer
	if err := json.Unmarshal(raw, &a); err != nil {
		fmt.Fprintf(stderr, "dcounter %s: unexpected answer %.200q: %v\n", verb, raw, err)
		return 1
	}
	fmt.Fprintln(stdout, text(a))
	return 0
}

// checkTTL refuses an expiry the server would: not positive, or not whole
// milliseconds. zeroOK admits 0 (no expiry asked for).
func checkTTL(d time.Duration, zeroOK bool) error {
	switch {
	case d == 0 && zeroOK:
		return nil
	case d <= 0:
		return fmt.Errorf("must be positive, got %v", d)
	case d%time.Millisecond != 0:
		return fmt.Errorf("must be whole milliseconds, got %v", d)
	}
	return nil
}

// parseTTLArg reads an expiry given as plain seconds ("90") or as a
// duration ("90s", "1h30m", "1500ms").
func parseTTLArg(s string) (time.Duration, error) {
	var d time.Duration
	if n, err := strconv.ParseUint(s, 10, 63); err == nil && strings.Trim(s, "0123456789") == "" {
		if n > uint64(math.MaxInt64/int64(time.Second)) {
			return 0, fmt.Errorf("%q is too long", s)
		}
		d = time.Duration(n) * time.Second
	} else if d, err = time.ParseDuration(s); err != nil {
		return 0, fmt.Errorf("want seconds or a duration like 90s, 1h30m: %v", err)
	}
	return d, checkTTL(d, false)
}

// keyArg returns the one KEY a verb needs, or prints why not.
func keyArg(verb string, pos []string, max int, stderr io.Writer) (string, bool) {
	if len(pos) == 0 || len(pos) > max {
		fmt.Fprintf(stderr, "dcounter %s: want KEY%s, got %d arguments (run 'dcounter %s --help')\n",
			verb, map[bool]string{true: " [SECONDS]", false: ""}[max > 1], len(pos), verb)
		return "", false
	}
	return pos[0], true
}

// keyVerbArgs parses the arguments of a verb that takes KEY and at most
// maxArgs positional arguments in all: the client, the positional
// arguments (KEY first) and, when ok is false, the exit code.
func keyVerbArgs(fs *flagSet, verb string, maxArgs int, args []string, stdout, stderr io.Writer) (c client, pos []string, code int, ok bool) {
	c.register(fs)
	pos, code, ok = fs.parseOrExit(args, stdout)
	if !ok {
		return c, nil, code, false
	}
	if _, ok := keyArg(verb, pos, maxArgs, stderr); !ok {
		return c, nil, exitUsage, false
	}
	return c, pos, 0, true
}

func runDel(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("del", "del KEY [--addr URL]", `
Deletes a counter: it reads 0 and is no longer listed, on every node, and
loses its expiry; a later write counts from 0. Prints "deleted", or "not
found" when the key was not live (absent, deleted or expired) on the node
that took the delete; both exit 0, and the delete is recorded either way, so
that it also reaches replicas that have not yet seen the key's last writes.
`+connHelp, stderr)
	c, pos, code, ok := keyVerbArgs(fs, "del", 1, args, stdout, stderr)
	if !ok {
		return code
	}
	key := pos[0]
	return c.counterVerb(ctx, "del", http.MethodDelete, counterPath(key), "", stdout, stderr, func(a counterAnswer) string {
		if a.Deleted != nil && *a.Deleted {
			return "deleted"
		}
		return "not found"
	})
}

func runTTL(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("ttl", "ttl KEY [SECONDS|DURATION] [--addr URL]", `
With only KEY, prints the time left before the counter expires, or "none"
(also for a key that is not live: absent, deleted or expired).

With SECONDS (or a duration like 90s, 1h30m, 1500ms), makes the counter
expire that long from now, replacing any expiry it had, and prints the time
left. Exits 1 if the key is not live: only a live key can be given an
expiry. "dcounter persist KEY" removes it.
`+connHelp, stderr)
	c, pos, code, ok := keyVerbArgs(fs, "ttl", 2, args, stdout, stderr)
	if !ok {
		return code
	}
	key := pos[0]
	show := func(a counterAnswer) string { return ttlText(a.TTLMs) }
	if len(pos) == 1 {
		return c.counterVerb(ctx, "ttl", http.MethodGet, counterPath(key), "", stdout, stderr, show)
	}
	d, err := parseTTLArg(pos[1])
	if err != nil {
		fmt.Fprintf(stderr, "dcounter ttl: %v\n", err)
		return exitUsage
	}
	body := `{"milliseconds":` + strconv.FormatInt(d.Milliseconds(), 10) + `}`
	if d%time.Second == 0 {
		body = `{"seconds":` + strconv.FormatInt(int64(d/time.Second), 10) + `}`
	}
	return c.counterVerb(ctx, "ttl", http.MethodPut, counterPath(key)+"/ttl", body, stdout, stderr, show)
}

func runPersist(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("persist", "persist KEY [--addr URL]", `
Removes a counter's expiry, so that it lives until deleted, and prints its
value. Exits 1 if the key is not live (absent, deleted or expired).
`+connHelp, stderr)
	c, pos, code, ok := keyVerbArgs(fs, "persist", 1, args, stdout, stderr)
	if !ok {
		return code
	}
	key := pos[0]
	return c.counterVerb(ctx, "persist", http.MethodDelete, counterPath(key)+"/ttl", "", stdout, stderr, func(a counterAnswer) string {
		return strconv.FormatInt(a.Value, 10)
	})
}

// maxPage is the server's largest page (api.MaxListLimit).
const maxPage = 1000

func runKeys(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("keys", "keys [PREFIX] [--limit N] [--addr URL]", `
Lists the live counters whose keys start with PREFIX (default: all), in
byte-wise key order, one per line: KEY VALUE, and the time left when the key
expires. A key with white space, quotes or unprintable characters is printed
quoted, with Go escapes. With --json, prints one JSON object per line
({"key":…,"value":…,"ttl_ms":…}).

Pages through the listing until its end (or --limit keys). A listing is not
a snapshot: keys written or deleted meanwhile may or may not show. Exits 1
if a page could not be read, after printing the keys read before it.
`+connHelp, stderr)
	var c client
	c.register(fs)
	limit := fs.Int("limit", 0, "print at most `N` keys (0: all)")
	pos, code, ok := fs.parseOrExit(args, stdout)
	if !ok {
		return code
	}
	if len(pos) > 1 {
		fmt.Fprintf(stderr, "dcounter keys: want at most one PREFIX, got %d arguments\n", len(pos))
		return exitUsage
	}
	if *limit < 0 {
		fmt.Fprintf(stderr, "dcounter keys: --limit must not be negative\n")
		return exitUsage
	}
	q := url.Values{}
	if len(pos) == 1 {
		q.Set("prefix", pos[0])
	}
	printed := 0
	for {
		page := maxPage
		if *limit > 0 {
			page = min(page, *limit-printed)
		}
		q.Set("limit", strconv.Itoa(page))
		var resp struct {
			Items []json.RawMessage `json:"items"`
			Next  string            `json:"next"`
		}
		if err := c.call(ctx, http.MethodGet, "/counters?"+q.Encode(), "", &resp); err != nil {
			fmt.Fprintf(stderr, "dcounter keys: %v\n", err)
			return 1
		}
		for _, raw := range resp.Items {
			if c.json {
				fmt.Fprintln(stdout, string(raw))
			} else {
				var a counterAnswer
				if err := json.Unmarshal(raw, &a); err != nil {
					fmt.Fprintf(stderr, "dcounter keys: unexpected item %.200q: %v\n", raw, err)
					return 1
				}
				line := keyText(a.Key) + " " + strconv.FormatInt(a.Value, 10)
				if a.TTLMs > 0 {
					line += " " + ttlText(a.TTLMs)
				}
				fmt.Fprintln(stdout, line)
			}
			printed++
		}
		if resp.Next == "" || (*limit > 0 && printed >= *limit) {
			return 0
		}
		q.Set("cursor", resp.Next)
	}
}

// keyText prints a key as is when that is unambiguous on a line of
// space-separated fields, else quoted.
func keyText(k string) string {
	if k == "" || strings.ContainsFunc(k, func(r rune) bool {
		return r == '"' || r == '\\' || unicode.IsSpace(r) || !unicode.IsPrint(r)
	}) {
		return strconv.Quote(k)
	}
	return k
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
