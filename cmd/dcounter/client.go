package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/dcounter/dcounter/client"
	"github.com/dcounter/dcounter/internal/tlsfiles"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

const defaultAddr = "http://127.0.0.1:8080"

const clientHelp = `
Talks to a node's (or the gateway's) client API. KEY defaults to "default".
Prints the counter's value after the operation (with --json, the server's
answer, which also carries ttl_ms while the key has an expiry). A key that
is not live (never written, deleted or expired) reads 0. Exits 1 if the
server refused the request or could not be reached, 2 on bad usage.

--addr may list several servers, comma-separated: a request that cannot
reach one (or that it refuses with 503) goes to the next. A write carries a
fresh Idempotency-Key, sent again with the retry when its answer is lost,
so it counts at most once; such a retry goes only to the server that may
have applied it.
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
// ourselves to the server. Only these (and --addr, --timeout) are read from
// the environment by client verbs, so that a verb's own settings (--by,
// --ttl, --limit) never come from a variable left in the shell.
type conn struct {
	token, ca, cert, key string
}

// clientEnv are the flags client verbs read from DCOUNTER_* variables.
var clientEnv = []string{"addr", "token", "ca", "client-cert", "client-key", "timeout"}

func (c *conn) register(fs *pflag.FlagSet) {
	fs.StringVar(&c.token, "token", "", "bearer `token` for a server with --auth-file; prefer the environment variable, command lines are visible to other users")
	fs.StringVar(&c.ca, "ca", "", "PEM CA `file` to verify an https:// server with (default: the system's roots)")
	fs.StringVar(&c.cert, "client-cert", "", "PEM certificate `file` to present to a server with --tls-client-ca (with --client-key)")
	fs.StringVar(&c.key, "client-key", "", "PEM private key `file` for --client-cert")
}

// open returns a client for the comma-separated endpoints in addrs.
func (c *conn) open(addrs string) (*client.Client, error) {
	var opts []client.Option
	if c.token != "" {
		opts = append(opts, client.WithToken(c.token))
	}
	if c.ca != "" || c.cert != "" || c.key != "" {
		tc, err := tlsfiles.ClientConfig(c.ca)
		if err != nil {
			return nil, fmt.Errorf("--ca: %w", err)
		}
		if c.cert != "" || c.key != "" {
			pair, err := tls.LoadX509KeyPair(c.cert, c.key)
			if err != nil {
				return nil, fmt.Errorf("--client-cert/--client-key: %w", err)
			}
			tc.Certificates = []tls.Certificate{pair}
		}
		opts = append(opts, client.WithTLSConfig(tc))
	}
	var eps []string
	for _, a := range strings.Split(addrs, ",") {
		if a = strings.TrimSpace(a); a != "" {
			eps = append(eps, a)
		}
	}
	cl, err := client.New(eps, opts...)
	if err != nil {
		return nil, fmt.Errorf("--addr: %w", err)
	}
	return cl, nil
}

// cliClient is what a client verb needs: where the server is, how long to
// wait for it, and how to prove ourselves.
type cliClient struct {
	conn
	addr    string
	timeout time.Duration
	json    bool
	idem    string // --idempotency-key, for verbs that write
}

// registerWrite adds the flag of verbs that write.
func (c *cliClient) registerWrite(fs *pflag.FlagSet) {
	fs.StringVar(&c.idem, "idempotency-key", "", "send the write with this `key` (1-255 printable ASCII characters) instead of a fresh one, so that running the command again (after an unknown outcome) applies it at most once")
}

// writeOpts are the options of the verb's write.
func (c *cliClient) writeOpts() []client.WriteOption {
	if c.idem == "" {
		return nil
	}
	return []client.WriteOption{client.WithIdempotencyKey(c.idem)}
}

// checkIdem refuses a key the server would.
func (c *cliClient) checkIdem(verb string, stderr io.Writer) bool {
	if len(c.idem) > 255 || strings.ContainsFunc(c.idem, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
		fmt.Fprintf(stderr, "dcounter %s: --idempotency-key must be 1-255 printable ASCII characters without spaces\n", verb)
		return false
	}
	return true
}

func (c *cliClient) register(fs *pflag.FlagSet) {
	fs.StringVar(&c.addr, "addr", defaultAddr, "`URL` of a node or gateway; several, comma-separated, to fail over between them")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Second, "request `timeout`")
	fs.BoolVar(&c.json, "json", false, "print the answer as JSON")
	c.conn.register(fs)
}

func isClientEnv(flagName string) bool { return slices.Contains(clientEnv, flagName) }

// do opens a client and runs f with a context bounded by --timeout,
// printing f's error; it returns the exit code.
func (c *cliClient) do(ctx context.Context, verb string, stderr io.Writer, f func(context.Context, *client.Client) error) int {
	cl, err := c.open(c.addr)
	if err != nil {
		fmt.Fprintf(stderr, "dcounter %s: %v\n", verb, err)
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if err := f(ctx, cl); err != nil {
		fmt.Fprintf(stderr, "dcounter %s: %s\n", verb, errText(err))
		return 1
	}
	return 0
}

// errText says what went wrong as a user of the command line wants it:
// the server's status and message, or why it could not be reached.
func errText(err error) string {
	var e *client.Error
	if !errors.As(err, &e) {
		return err.Error()
	}
	var msg string
	switch {
	case e.StatusCode != 0 && e.Message != "":
		msg = fmt.Sprintf("%d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.Message)
	case e.StatusCode != 0:
		msg = fmt.Sprintf("%d %s", e.StatusCode, http.StatusText(e.StatusCode))
	case e.Err != nil:
		msg = e.Err.Error()
	default:
		msg = e.Error()
	}
	if errors.Is(err, client.ErrOutcomeUnknown) {
		msg += " (the write may or may not have been applied"
		if e.IdempotencyKey != "" {
			msg += "; run the command again with --idempotency-key " + e.IdempotencyKey + " to apply it at most once"
		}
		msg += ")"
	}
	return msg
}

// counterAnswer is a counter route's answer, as --json prints it.
type counterAnswer struct {
	Key   string `json:"key"`
	Value int64  `json:"value"`
	TTLMs int64  `json:"ttl_ms,omitempty"`
}

func answerOf(c client.Counter) counterAnswer {
	return counterAnswer{Key: c.Key, Value: c.Value, TTLMs: c.TTL.Milliseconds()}
}

// print prints a as JSON with --json, else text(a).
func (c *cliClient) print(stdout io.Writer, a counterAnswer, text func(counterAnswer) string) {
	if c.json {
		b, _ := json.Marshal(a)
		fmt.Fprintln(stdout, string(b))
		return
	}
	fmt.Fprintln(stdout, text(a))
}

// ttlText prints an expiry: the time left, or "none".
func ttlText(ms int64) string {
	if ms <= 0 {
		return "none"
	}
	return (time.Duration(ms) * time.Millisecond).String()
}

func counterCommand(verb, short string) *cobra.Command {
	syn := verb + " [KEY] [--by N] [--ttl DURATION [--ttl-always]] [--addr URL]"
	if verb == "get" {
		syn = "get [KEY] [--addr URL]"
	}
	help := clientHelp + writeTTLHelp + connHelp
	if verb == "get" {
		help = clientHelp + connHelp
	}
	cmd := newCommand(syn, short, help)
	fs := cmd.Flags()
	var c cliClient
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
		c.registerWrite(fs)
	}
	return finish(cmd, envClient, func(ctx context.Context, pos []string, stdout, stderr io.Writer) int {
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
		if by > math.MaxInt64 {
			fmt.Fprintf(stderr, "dcounter %s: --by must be at most %d\n", verb, int64(math.MaxInt64))
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
		if !c.checkIdem(verb, stderr) {
			return exitUsage
		}
		value := func(a counterAnswer) string { return strconv.FormatInt(a.Value, 10) }
		return c.do(ctx, verb, stderr, func(ctx context.Context, cl *client.Client) error {
			var got client.Counter
			var err error
			if verb == "get" {
				got, err = cl.Get(ctx, key)
			} else {
				delta := int64(by)
				if verb == "dec" {
					delta = -delta
				}
				opts := c.writeOpts()
				if ttl > 0 {
					opts = append(opts, client.WithTTL(ttl))
					if ttlAlways {
						opts = append(opts, client.TTLAlways())
					}
				}
				got, err = cl.Add(ctx, key, delta, opts...)
			}
			if err != nil {
				return err
			}
			c.print(stdout, answerOf(got), value)
			return nil
		})
	})
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
// keyCommand builds a verb that takes KEY and at most maxArgs positional
// arguments in all; run gets the client and the positional arguments (KEY
// first).
func keyCommand(use, short, long string, maxArgs int, run func(ctx context.Context, c *cliClient, pos []string, stdout, stderr io.Writer) int) *cobra.Command {
	cmd := newCommand(use, short, long)
	var c cliClient
	c.register(cmd.Flags())
	c.registerWrite(cmd.Flags())
	verb := cmd.Name()
	return finish(cmd, envClient, func(ctx context.Context, pos []string, stdout, stderr io.Writer) int {
		if _, ok := keyArg(verb, pos, maxArgs, stderr); !ok || !c.checkIdem(verb, stderr) {
			return exitUsage
		}
		return run(ctx, &c, pos, stdout, stderr)
	})
}

func delCommand() *cobra.Command {
	return keyCommand("del KEY [--addr URL]", "delete a counter everywhere: del KEY", `
Deletes a counter: it reads 0 and is no longer listed, on every node, and
loses its expiry; a later write counts from 0. Prints "deleted", or "not
found" when the key was not live (absent, deleted or expired) on the node
that took the delete; both exit 0, and the delete is recorded either way, so
that it also reaches replicas that have not yet seen the key's last writes.
`+connHelp, 1, runDel)
}

func runDel(ctx context.Context, c *cliClient, pos []string, stdout, stderr io.Writer) int {
	key := pos[0]
	return c.do(ctx, "del", stderr, func(ctx context.Context, cl *client.Client) error {
		existed, err := cl.Delete(ctx, key, c.writeOpts()...)
		if err != nil {
			return err
		}
		switch {
		case c.json:
			b, _ := json.Marshal(struct {
				Key     string `json:"key"`
				Deleted bool   `json:"deleted"`
			}{key, existed})
			fmt.Fprintln(stdout, string(b))
		case existed:
			fmt.Fprintln(stdout, "deleted")
		default:
			fmt.Fprintln(stdout, "not found")
		}
		return nil
	})
}

func ttlCommand() *cobra.Command {
	return keyCommand("ttl KEY [SECONDS|DURATION] [--addr URL]", "show or set a counter's expiry: ttl KEY [SECONDS]", `
With only KEY, prints the time left before the counter expires, or "none"
(also for a key that is not live: absent, deleted or expired).

With SECONDS (or a duration like 90s, 1h30m, 1500ms), makes the counter
expire that long from now, replacing any expiry it had, and prints the time
left. Exits 1 if the key is not live: only a live key can be given an
expiry. "dcounter persist KEY" removes it.
`+connHelp, 2, runTTL)
}

func runTTL(ctx context.Context, c *cliClient, pos []string, stdout, stderr io.Writer) int {
	key := pos[0]
	var d time.Duration
	if len(pos) == 2 {
		var err error
		if d, err = parseTTLArg(pos[1]); err != nil {
			fmt.Fprintf(stderr, "dcounter ttl: %v\n", err)
			return exitUsage
		}
	}
	return c.do(ctx, "ttl", stderr, func(ctx context.Context, cl *client.Client) error {
		var got client.Counter
		var err error
		if d == 0 {
			got, err = cl.Get(ctx, key)
		} else {
			got, err = cl.SetTTL(ctx, key, d, c.writeOpts()...)
		}
		if err != nil {
			return err
		}
		c.print(stdout, answerOf(got), func(a counterAnswer) string { return ttlText(a.TTLMs) })
		return nil
	})
}

func persistCommand() *cobra.Command {
	return keyCommand("persist KEY [--addr URL]", "remove a counter's expiry: persist KEY", `
Removes a counter's expiry, so that it lives until deleted, and prints its
value. Exits 1 if the key is not live (absent, deleted or expired).
`+connHelp, 1, runPersist)
}

func runPersist(ctx context.Context, c *cliClient, pos []string, stdout, stderr io.Writer) int {
	key := pos[0]
	return c.do(ctx, "persist", stderr, func(ctx context.Context, cl *client.Client) error {
		got, err := cl.Persist(ctx, key, c.writeOpts()...)
		if err != nil {
			return err
		}
		c.print(stdout, answerOf(got), func(a counterAnswer) string { return strconv.FormatInt(a.Value, 10) })
		return nil
	})
}

// maxPage is the server's largest page (api.MaxListLimit).
const maxPage = 1000

func keysCommand() *cobra.Command {
	cmd := newCommand("keys [PREFIX] [--limit N] [--addr URL]", "list live counters: keys [PREFIX] [--limit N]", `
Lists the live counters whose keys start with PREFIX (default: all), in
byte-wise key order, one per line: KEY VALUE, and the time left when the key
expires. A key with white space, quotes or unprintable characters is printed
quoted, with Go escapes. With --json, prints one JSON object per line
({"key":…,"value":…,"ttl_ms":…}).

Pages through the listing until its end (or --limit keys). A listing is not
a snapshot: keys written or deleted meanwhile may or may not show. Exits 1
if a page could not be read, after printing the keys read before it.
--timeout bounds each page.
`+connHelp)
	var c cliClient
	c.register(cmd.Flags())
	limit := cmd.Flags().Int("limit", 0, "print at most `N` keys (0: all)")
	return finish(cmd, envClient, func(ctx context.Context, pos []string, stdout, stderr io.Writer) int {
		if len(pos) > 1 {
			fmt.Fprintf(stderr, "dcounter keys: want at most one PREFIX, got %d arguments\n", len(pos))
			return exitUsage
		}
		if *limit < 0 {
			fmt.Fprintf(stderr, "dcounter keys: --limit must not be negative\n")
			return exitUsage
		}
		opts := client.ListOptions{}
		if len(pos) == 1 {
			opts.Prefix = pos[0]
		}
		cl, err := c.open(c.addr)
		if err != nil {
			fmt.Fprintf(stderr, "dcounter keys: %v\n", err)
			return exitUsage
		}
		printed := 0
		for {
			opts.Limit = maxPage
			if *limit > 0 {
				opts.Limit = min(opts.Limit, *limit-printed)
			}
			pctx, cancel := context.WithTimeout(ctx, c.timeout)
			page, err := cl.List(pctx, opts)
			cancel()
			if err != nil {
				fmt.Fprintf(stderr, "dcounter keys: %s\n", errText(err))
				return 1
			}
			for _, it := range page.Items {
				c.print(stdout, answerOf(it), func(a counterAnswer) string {
					line := keyText(a.Key) + " " + strconv.FormatInt(a.Value, 10)
					if a.TTLMs > 0 {
						line += " " + ttlText(a.TTLMs)
					}
					return line
				})
				printed++
			}
			if page.Next == "" || (*limit > 0 && printed >= *limit) {
				return 0
			}
			opts.Cursor = page.Next
		}
	})
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

// noArgs refuses positional arguments for a verb that takes none.
func noArgs(verb string, pos []string, stderr io.Writer) bool {
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "dcounter %s: unexpected argument %q (run 'dcounter %s --help')\n", verb, pos[0], verb)
		return false
	}
	return true
}

func nodesCommand() *cobra.Command {
	cmd := newCommand("nodes [--addr URL]", "list the members a node (or gateway) sees", "Lists the members that the node (or gateway) at --addr sees, with their state. \"members\" and \"nodes\" are the same command.")
	cmd.Aliases = []string{"members"}
	var c cliClient
	c.register(cmd.Flags())
	return finish(cmd, envClient, func(ctx context.Context, pos []string, stdout, stderr io.Writer) int {
		verb := cmd.CalledAs()
		if !noArgs(verb, pos, stderr) {
			return exitUsage
		}
		return c.do(ctx, verb, stderr, func(ctx context.Context, cl *client.Client) error {
			raw, err := cl.Nodes(ctx)
			if err != nil {
				return err
			}
			printNodes(stdout, raw, c.json)
			return nil
		})
	})
}

func printNodes(stdout io.Writer, raw json.RawMessage, asJSON bool) {
	var rows []map[string]any
	if asJSON || json.Unmarshal(raw, &rows) != nil {
		fmt.Fprintln(stdout, strings.TrimSpace(string(raw)))
		return
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
}

func statusCommand() *cobra.Command {
	cmd := newCommand("status [--addr URL]", "show a node's health summary", "Shows the health summary of the node (or gateway) at --addr (indented JSON; one line with --json). Exits 1 unless it is healthy.")
	var c cliClient
	c.register(cmd.Flags())
	return finish(cmd, envClient, func(ctx context.Context, pos []string, stdout, stderr io.Writer) int {
		if !noArgs("status", pos, stderr) {
			return exitUsage
		}
		return c.do(ctx, "status", stderr, func(ctx context.Context, cl *client.Client) error {
			raw, err := cl.Health(ctx)
			if len(raw) > 0 {
				var v any
				if json.Unmarshal(raw, &v) == nil {
					var b []byte
					if c.json {
						b, _ = json.Marshal(v)
					} else {
						b, _ = json.MarshalIndent(v, "", "  ")
					}
					fmt.Fprintln(stdout, string(b))
				}
			}
			return err
		})
	})
}

func healthCommand() *cobra.Command {
	cmd := newCommand("health [URL] [--addr URL]", "exit 0 if the node at URL is healthy (for container health checks)", `
Exits 0 if GET URL/health answers 200, else 1. For container health checks;
prints nothing on success (with --json, the server's answer). URL defaults
to --addr.
`)
	var c cliClient
	c.register(cmd.Flags())
	cmd.Flags().Lookup("timeout").DefValue = "2s"
	c.timeout = 2 * time.Second
	return finish(cmd, envClient, func(ctx context.Context, pos []string, stdout, stderr io.Writer) int {
		if len(pos) > 1 {
			fmt.Fprintf(stderr, "dcounter health: want at most one URL, got %d arguments\n", len(pos))
			return exitUsage
		}
		if len(pos) == 1 {
			c.addr = pos[0]
		}
		return c.do(ctx, "health", stderr, func(ctx context.Context, cl *client.Client) error {
			raw, err := cl.Health(ctx)
			if err == nil && c.json {
				fmt.Fprintln(stdout, strings.TrimSpace(string(raw)))
			}
			return err
		})
	})
}

func keygenCommand() *cobra.Command {
	cmd := newCommand("keygen", "print a new random cluster key for --cluster-key", "Prints a new random 32-byte key, base64-encoded, for --cluster-key / DCOUNTER_CLUSTER_KEY.")
	asJSON := cmd.Flags().Bool("json", false, `print {"key":…}`)
	return finish(cmd, envNone, func(_ context.Context, pos []string, stdout, stderr io.Writer) int {
		if !noArgs("keygen", pos, stderr) {
			return exitUsage
		}
		var k [32]byte
		if _, err := rand.Read(k[:]); err != nil {
			fmt.Fprintf(stderr, "dcounter keygen: %v\n", err)
			return 1
		}
		key := base64.StdEncoding.EncodeToString(k[:])
		if *asJSON {
			b, _ := json.Marshal(map[string]string{"key": key})
			fmt.Fprintln(stdout, string(b))
			return 0
		}
		fmt.Fprintln(stdout, key)
		return 0
	})
}

func versionCommand() *cobra.Command {
	cmd := newCommand("version", "print the version", "Prints the version.")
	asJSON := cmd.Flags().Bool("json", false, `print {"version":…}`)
	return finish(cmd, envNone, func(_ context.Context, pos []string, stdout, stderr io.Writer) int {
		if !noArgs("version", pos, stderr) {
			return exitUsage
		}
		if *asJSON {
			b, _ := json.Marshal(map[string]string{"version": version})
			fmt.Fprintln(stdout, string(b))
			return 0
		}
		fmt.Fprintln(stdout, "dcounter", version)
		return 0
	})
}
