package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/clusterkey"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// clearDcounterEnv unsets every DCOUNTER_* variable for the duration of the
// test, so that the environment of whoever runs the tests cannot leak into
// flag parsing.
func clearDcounterEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "DCOUNTER_") {
			t.Setenv(k, "") // restores the old value on cleanup
			os.Unsetenv(k)
		}
	}
}

// testCmd is a command "inc" with a client verb's kind of flags, run
// through the same root, parsing and environment as dcounter's commands;
// it records what it was given.
type testCmd struct {
	by      uint64
	addr    string
	timeout time.Duration
	verbose bool
	pos     []string
	ran     bool
}

// runTest runs args on a root holding only the test command, its flags
// read from the environment as scope says.
func (tc *testCmd) runTest(t *testing.T, scope envScope, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	c := newCommand("inc [KEY] [--by N]", "increment", "Increments a counter.")
	fs := c.Flags()
	fs.Uint64Var(&tc.by, "by", 1, "positive `amount` to add")
	fs.StringVar(&tc.addr, "addr", defaultAddr, "`URL` of a node")
	fs.DurationVar(&tc.timeout, "timeout", 5*time.Second, "request `timeout`")
	fs.BoolVar(&tc.verbose, "verbose", false, "say more")
	finish(c, scope, func(_ context.Context, pos []string, _, _ io.Writer) int {
		tc.pos, tc.ran = pos, true
		return 0
	})
	var out, errb bytes.Buffer
	code = execute(context.Background(), newRoot(c), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestEnvName(t *testing.T) {
	tests := []struct{ flag, want string }{
		{"gossip-addr", "DCOUNTER_GOSSIP_ADDR"},
		{"by", "DCOUNTER_BY"},
		{"cluster-key", "DCOUNTER_CLUSTER_KEY"},
		{"join-timeout", "DCOUNTER_JOIN_TIMEOUT"},
		{"gateway-http-addr", "DCOUNTER_GATEWAY_HTTP_ADDR"},
	}
	for _, tc := range tests {
		if got := envName(tc.flag); got != tc.want {
			t.Errorf("envName(%q) = %q, want %q", tc.flag, got, tc.want)
		}
	}
}

func TestParsePositionalAndFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		pos     []string
		by      uint64
		verbose bool
	}{
		{name: "nothing", args: nil, pos: []string{}, by: 1},
		{name: "flag after positional", args: []string{"mykey", "--by", "5"}, pos: []string{"mykey"}, by: 5},
		{name: "flag before positional", args: []string{"--by", "5", "mykey"}, pos: []string{"mykey"}, by: 5},
		{name: "interleaved", args: []string{"a", "--by=5", "b", "--verbose", "c"}, pos: []string{"a", "b", "c"}, by: 5, verbose: true},
		{name: "only positionals", args: []string{"a", "b"}, pos: []string{"a", "b"}, by: 1},
		{name: "double dash ends flags after a positional", args: []string{"mykey", "--", "--by", "5"}, pos: []string{"mykey", "--by", "5"}, by: 1},
		{name: "double dash first", args: []string{"--", "--by", "5"}, pos: []string{"--by", "5"}, by: 1},
		{name: "double dash after flags", args: []string{"--by", "5", "--", "-x"}, pos: []string{"-x"}, by: 5},
		{name: "dash-leading key after double dash", args: []string{"--", "-5"}, pos: []string{"-5"}, by: 1},
		{name: "double dash in the middle", args: []string{"a", "--", "b", "--by", "5"}, pos: []string{"a", "b", "--by", "5"}, by: 1},
		{name: "a second double dash is a positional", args: []string{"--", "--"}, pos: []string{"--"}, by: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearDcounterEnv(t)
			var c testCmd
			if code, _, errOut := c.runTest(t, envServer, append([]string{"inc"}, tc.args...)...); code != 0 {
				t.Fatalf("inc %q = %d: %s", tc.args, code, errOut)
			}
			if !slices.Equal(c.pos, tc.pos) {
				t.Errorf("positional = %q, want %q", c.pos, tc.pos)
			}
			if c.by != tc.by || c.verbose != tc.verbose {
				t.Errorf("by=%d verbose=%v, want by=%d verbose=%v", c.by, c.verbose, tc.by, tc.verbose)
			}
		})
	}
}

func TestParseEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		by      uint64
		addr    string
		timeout time.Duration
		verbose bool
	}{
		{
			name: "defaults",
			by:   1, addr: defaultAddr, timeout: 5 * time.Second,
		},
		{
			name: "flags from env",
			env:  map[string]string{"DCOUNTER_BY": "7", "DCOUNTER_ADDR": "http://10.0.0.1:9000", "DCOUNTER_TIMEOUT": "250ms", "DCOUNTER_VERBOSE": "true"},
			by:   7, addr: "http://10.0.0.1:9000", timeout: 250 * time.Millisecond, verbose: true,
		},
		{
			name: "command line wins over env",
			env:  map[string]string{"DCOUNTER_BY": "7", "DCOUNTER_ADDR": "http://env:1"},
			args: []string{"key", "--by", "5", "--addr", "http://cli:2"},
			by:   5, addr: "http://cli:2", timeout: 5 * time.Second,
		},
		{
			name: "command line wins even when it gives the default",
			env:  map[string]string{"DCOUNTER_BY": "7"},
			args: []string{"--by", "1"},
			by:   1, addr: defaultAddr, timeout: 5 * time.Second,
		},
		{
			name: "env fills only the flags not given",
			env:  map[string]string{"DCOUNTER_BY": "7", "DCOUNTER_TIMEOUT": "1s"},
			args: []string{"--by=3"},
			by:   3, addr: defaultAddr, timeout: time.Second,
		},
		{
			name: "scoped variable wins over the shared one",
			env:  map[string]string{"DCOUNTER_BY": "7", "DCOUNTER_INC_BY": "8"},
			by:   8, addr: defaultAddr, timeout: 5 * time.Second,
		},
		{
			name: "an empty variable counts as unset",
			env:  map[string]string{"DCOUNTER_BY": "7", "DCOUNTER_INC_BY": ""},
			by:   7, addr: defaultAddr, timeout: 5 * time.Second,
		},
		{
			name: "unrelated variables are ignored",
			env:  map[string]string{"DCOUNTER_NOPE": "x", "BY": "9", "DCOUNTER_NODE_BY": "9"},
			by:   1, addr: defaultAddr, timeout: 5 * time.Second,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearDcounterEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var c testCmd
			if code, _, errOut := c.runTest(t, envServer, append([]string{"inc"}, tc.args...)...); code != 0 {
				t.Fatalf("inc %q = %d: %s", tc.args, code, errOut)
			}
			if c.by != tc.by || c.addr != tc.addr || c.timeout != tc.timeout || c.verbose != tc.verbose {
				t.Errorf("got by=%d addr=%q timeout=%v verbose=%v\nwant by=%d addr=%q timeout=%v verbose=%v",
					c.by, c.addr, c.timeout, c.verbose, tc.by, tc.addr, tc.timeout, tc.verbose)
			}
		})
	}
}

// A client verb reads only its connection flags from the environment, and
// only from the shared variables.
func TestParseEnvClientScope(t *testing.T) {
	clearDcounterEnv(t)
	t.Setenv("DCOUNTER_BY", "1000")
	t.Setenv("DCOUNTER_INC_ADDR", "http://scoped:1")
	t.Setenv("DCOUNTER_TIMEOUT", "1s")
	var c testCmd
	if code, _, errOut := c.runTest(t, envClient, "inc"); code != 0 {
		t.Fatalf("inc = %d: %s", code, errOut)
	}
	if c.by != 1 || c.addr != defaultAddr || c.timeout != time.Second {
		t.Errorf("by=%d addr=%q timeout=%v; want 1, %q, 1s", c.by, c.addr, c.timeout, defaultAddr)
	}
}

func TestParseInvalidEnv(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want []string // substrings of stderr
	}{
		{"not a number", map[string]string{"DCOUNTER_BY": "lots"}, []string{`"lots"`, "$DCOUNTER_BY"}},
		{"negative", map[string]string{"DCOUNTER_BY": "-1"}, []string{"$DCOUNTER_BY"}},
		{"bad duration", map[string]string{"DCOUNTER_TIMEOUT": "soon"}, []string{`"soon"`, "$DCOUNTER_TIMEOUT"}},
		{"bad bool", map[string]string{"DCOUNTER_VERBOSE": "maybe"}, []string{"$DCOUNTER_VERBOSE"}},
		{"scoped variable", map[string]string{"DCOUNTER_INC_BY": "x"}, []string{"$DCOUNTER_INC_BY"}},
		{"every bad variable is named", map[string]string{"DCOUNTER_BY": "x", "DCOUNTER_TIMEOUT": "y"}, []string{"$DCOUNTER_BY", "$DCOUNTER_TIMEOUT"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearDcounterEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var c testCmd
			code, out, errOut := c.runTest(t, envServer, "inc", "key")
			if code != exitUsage || c.ran || out != "" {
				t.Fatalf("exit %d, ran %v, stdout %q; want %d, not run, nothing", code, c.ran, out, exitUsage)
			}
			for _, w := range append(tc.want, "Run 'dcounter inc --help' for usage.") {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q does not mention %q", errOut, w)
				}
			}
		})
	}
}

func TestParseHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"mykey", "--help"}, {"--by", "5", "--help"}} {
		clearDcounterEnv(t)
		t.Setenv("DCOUNTER_BY", "not a number") // help does not read the environment
		var c testCmd
		code, out, errOut := c.runTest(t, envServer, append([]string{"inc"}, args...)...)
		if code != 0 || c.ran || errOut != "" {
			t.Errorf("inc %q: exit %d, ran %v, stderr %q; want 0, not run, nothing", args, code, c.ran, errOut)
		}
		if !strings.HasPrefix(out, "Usage: dcounter inc [KEY] [--by N]\n") || !strings.Contains(out, "Increments a counter.") {
			t.Errorf("usage does not start with the synopsis and help:\n%s", out)
		}
		for _, name := range []string{"by", "addr", "timeout", "verbose"} {
			want := "  --" + name + " "
			line := slices.IndexFunc(strings.Split(out, "\n"), func(l string) bool { return strings.HasPrefix(l, want) })
			if line < 0 || !strings.Contains(strings.Split(out, "\n")[line], "[$DCOUNTER_INC_"+strings.ToUpper(name)+", $DCOUNTER_"+strings.ToUpper(name)+"]") {
				t.Errorf("usage has no line for --%s with both its variables:\n%s", name, out)
			}
		}
		if !strings.Contains(out, "(default "+defaultAddr+")") || !strings.Contains(out, "(default 5s)") {
			t.Errorf("usage does not show non-zero defaults:\n%s", out)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"unknown flag", nil, []string{"key", "--nope"}, "dcounter inc: unknown flag: --nope"},
		{"unknown flag with value", nil, []string{"--nope=1", "key"}, "unknown flag: --nope"},
		{"unknown shorthand", nil, []string{"-x"}, "unknown shorthand flag: 'x' in -x"},
		{"bad flag value", nil, []string{"--by", "x"}, `invalid value "x" for --by`},
		{"negative flag value", nil, []string{"--by", "-3"}, `invalid value "-3" for --by`},
		{"missing flag value", nil, []string{"--by"}, "flag needs an argument: --by"},
		{"bad env value", map[string]string{"DCOUNTER_BY": "x"}, nil, "$DCOUNTER_BY"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearDcounterEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var c testCmd
			code, out, errOut := c.runTest(t, envServer, append([]string{"inc"}, tc.args...)...)
			if code != exitUsage || c.ran {
				t.Fatalf("inc %q = exit %d, ran %v; want %d, not run", tc.args, code, c.ran, exitUsage)
			}
			if out != "" {
				t.Errorf("stdout = %q, want nothing", out)
			}
			if !strings.Contains(errOut, tc.want) || !strings.Contains(errOut, "Run 'dcounter inc --help' for usage.") {
				t.Errorf("stderr = %q, want it to contain %q and a pointer to --help", errOut, tc.want)
			}
		})
	}
}

func TestRunTopLevel(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		code       int
		usageOnOut bool // usage on stdout (else stderr)
		errWant    string
	}{
		{name: "no arguments", args: nil, code: exitUsage},
		{name: "help", args: []string{"help"}, code: 0, usageOnOut: true},
		{name: "--help", args: []string{"--help"}, code: 0, usageOnOut: true},
		{name: "-h", args: []string{"-h"}, code: 0, usageOnOut: true},
		{name: "unknown command", args: []string{"frob"}, code: exitUsage, errWant: `dcounter: unknown command "frob"`},
		{name: "flag instead of command", args: []string{"--by", "5"}, code: exitUsage, errWant: "dcounter: unknown flag: --by"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearDcounterEnv(t)
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), tc.args, &stdout, &stderr); code != tc.code {
				t.Fatalf("run(%q) = %d, want %d", tc.args, code, tc.code)
			}
			usageOut, other := &stderr, &stdout
			if tc.usageOnOut {
				usageOut, other = &stdout, &stderr
			}
			if other.Len() != 0 {
				t.Errorf("unexpected output on the other stream: %q", other.String())
			}
			u := usageOut.String()
			if !strings.Contains(u, "Usage:\n  dcounter <command> [arguments]") || !strings.Contains(u, "DCOUNTER_ADDR") {
				t.Errorf("no usage in output:\n%s", u)
			}
			for _, c := range commands() {
				for _, name := range append([]string{c.Name()}, c.Aliases...) {
					if !strings.Contains(u, "\n  "+name+" ") {
						t.Errorf("usage does not list command %q:\n%s", name, u)
					}
				}
			}
			if !strings.Contains(u, tc.errWant) {
				t.Errorf("output does not contain %q:\n%s", tc.errWant, u)
			}
		})
	}
}

func TestRunCommandHelp(t *testing.T) {
	for _, c := range commands() {
		for _, name := range append([]string{c.Name()}, c.Aliases...) {
			for _, args := range [][]string{{name, "--help"}, {name, "-h"}, {"help", name}} {
				clearDcounterEnv(t)
				var stdout, stderr bytes.Buffer
				if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
					t.Fatalf("%q = %d, want 0; stderr: %s", args, code, stderr.String())
				}
				if stderr.Len() != 0 {
					t.Errorf("%q: stderr = %q, want nothing", args, stderr.String())
				}
				if out := stdout.String(); !strings.HasPrefix(out, "Usage: dcounter "+c.Name()) || !strings.Contains(out, "--help") {
					t.Errorf("%q output:\n%s", args, out)
				}
			}
		}
	}
}

// Every flag of every command is in its --help with the variables it is
// read from: all of a server's, scoped first; a client verb's connection
// flags only; none of the other commands'.
func TestRunHelpListsEveryFlagAndVariable(t *testing.T) {
	servers := map[string]bool{"node": true, "gateway": true, "discovery": true}
	for _, c := range commands() {
		clearDcounterEnv(t)
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), []string{c.Name(), "--help"}, &stdout, &stderr); code != 0 {
			t.Fatalf("%s --help = %d", c.Name(), code)
		}
		lines := strings.Split(stdout.String(), "\n")
		c.Flags().VisitAll(func(f *pflag.Flag) {
			i := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "  --"+f.Name+" ") || l == "  --"+f.Name })
			if i < 0 || i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "      ") || len(strings.TrimSpace(lines[i+1])) < 5 {
				t.Errorf("%s --help does not explain --%s:\n%s", c.Name(), f.Name, stdout.String())
				return
			}
			var want string
			switch {
			case servers[c.Name()]:
				want = "[$" + envName(c.Name()+"-"+f.Name) + ", $" + envName(f.Name) + "]"
			case slices.Contains(clientEnv, f.Name) && c.Name() != "completion" && c.Name() != "keygen" && c.Name() != "version" && c.Name() != "secrets":
				want = "[$" + envName(f.Name) + "]"
			}
			if want == "" && strings.Contains(lines[i], "[$") || !strings.HasSuffix(lines[i], want) {
				t.Errorf("%s --help: %q, want it to end with %q", c.Name(), lines[i], want)
			}
		})
	}
}

func TestRunNodeHelpListsEveryFlag(t *testing.T) {
	clearDcounterEnv(t)
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"node", "--help"}, &stdout, &stderr); code != 0 {
		t.Fatalf("node --help = %d, want 0; stderr: %s", code, stderr.String())
	}
	out := stdout.String()
	for _, name := range []string{
		"name", "gossip-addr", "http-addr", "advertise-addr", "join", "bootstrap", "join-timeout",
		"cluster", "cluster-key", "data-dir", "sync-interval", "fanout", "delta-gap", "debug-addr", "log-level", "log-format",
	} {
		if !strings.Contains(out, "  --"+name+" ") || !strings.Contains(out, "$"+envName(name)+"]") {
			t.Errorf("node --help does not list --%s with $%s", name, envName(name))
		}
	}
	// A zero duration's meaning is in the flag's text ("0: never", "default
	// 2×--max-clock-skew"); a bare "(default 0s)" would contradict it.
	if strings.Contains(out, "(default 0s)") {
		t.Errorf("node --help prints (default 0s):\n%s", out)
	}
}

func TestRunUnknownFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"help", "frob"}, `dcounter help: unknown command "frob"`},
		{[]string{"get", "--nope"}, "dcounter get: unknown flag: --nope"},
		{[]string{"inc", "key", "--bogus=1"}, "dcounter inc: unknown flag: --bogus"},
		{[]string{"inc", "--bogus"}, "dcounter inc: unknown flag: --bogus"},
		{[]string{"node", "--nope"}, "dcounter node: unknown flag: --nope"},
		{[]string{"keygen", "--nope"}, "dcounter keygen: unknown flag: --nope"},
		{[]string{"members", "--nope"}, "dcounter nodes: unknown flag: --nope"},
		{[]string{"status", "-x"}, "dcounter status: unknown shorthand flag: 'x' in -x"},
		{[]string{"get", "--ttl", "1s"}, "dcounter get: unknown flag: --ttl"},
	} {
		clearDcounterEnv(t)
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), tc.args, &stdout, &stderr); code != exitUsage {
			t.Errorf("run(%q) = %d, want %d", tc.args, code, exitUsage)
		}
		name := strings.Fields(strings.TrimPrefix(tc.want, "dcounter "))[0]
		name = strings.TrimSuffix(name, ":")
		if !strings.Contains(stderr.String(), tc.want) || !strings.Contains(stderr.String(), "Run 'dcounter "+name+" --help' for usage.") {
			t.Errorf("run(%q) stderr = %q, want %q and a pointer to --help", tc.args, stderr.String(), tc.want)
		}
		if stdout.Len() != 0 {
			t.Errorf("run(%q) stdout = %q, want nothing", tc.args, stdout.String())
		}
	}
}

// Extra (or missing) positional arguments are usage errors, before
// anything is contacted or started.
func TestRunWrongArgumentCount(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"inc", "a", "b"}, "want at most one KEY, got 2 arguments"},
		{[]string{"get", "a", "b"}, "want at most one KEY"},
		{[]string{"del"}, "want KEY, got 0 arguments"},
		{[]string{"del", "a", "b"}, "want KEY, got 2 arguments"},
		{[]string{"ttl", "a", "1", "2"}, "want KEY [SECONDS], got 3 arguments"},
		{[]string{"persist", "a", "b"}, "want KEY, got 2 arguments"},
		{[]string{"keys", "a", "b"}, "want at most one PREFIX"},
		{[]string{"nodes", "extra"}, `dcounter nodes: unexpected argument "extra"`},
		{[]string{"members", "extra"}, `dcounter members: unexpected argument "extra"`},
		{[]string{"status", "extra"}, `unexpected argument "extra"`},
		{[]string{"health", "a", "b"}, "want at most one URL"},
		{[]string{"keygen", "extra"}, `unexpected argument "extra"`},
		{[]string{"version", "extra"}, `unexpected argument "extra"`},
		{[]string{"secrets", "init"}, "want 'init DIR' or 'token DIR ROLE'"},
		{[]string{"completion"}, "want one shell"},
		{[]string{"completion", "bash", "zsh"}, "want one shell"},
		{[]string{"completion", "tcsh"}, `unknown shell "tcsh"`},
		{[]string{"node", "extra"}, `dcounter node: unexpected argument "extra"`},
		{[]string{"gateway", "extra"}, `dcounter gateway: unexpected argument "extra"`},
		{[]string{"discovery", "extra"}, `dcounter discovery: unexpected argument "extra"`},
	} {
		clearDcounterEnv(t)
		var stdout, stderr bytes.Buffer
		args := append(slices.Clone(tc.args), "--addr", "http://127.0.0.1:1")
		if slices.Contains([]string{"node", "gateway", "discovery", "keygen", "version", "secrets", "completion"}, tc.args[0]) {
			args = tc.args
		}
		if code := run(context.Background(), args, &stdout, &stderr); code != exitUsage {
			t.Errorf("run(%q) = %d, want %d; stderr %q", args, code, exitUsage, stderr.String())
		}
		if !strings.Contains(stderr.String(), tc.want) || stdout.Len() != 0 {
			t.Errorf("run(%q): stdout %q, stderr %q; want nothing and %q", args, stdout.String(), stderr.String(), tc.want)
		}
	}
}

func TestRunInvalidEnv(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  string
	}{
		{[]string{"get", "key"}, "DCOUNTER_TIMEOUT"},
		{[]string{"health"}, "DCOUNTER_TIMEOUT"},
		{[]string{"node", "--in-memory"}, "DCOUNTER_FANOUT"},
		{[]string{"node", "--in-memory"}, "DCOUNTER_NODE_SYNC_INTERVAL"},
		{[]string{"gateway", "--nodes", "http://127.0.0.1:1"}, "DCOUNTER_GATEWAY_MAX_TRIES"},
		{[]string{"discovery"}, "DCOUNTER_INSECURE"},
	} {
		clearDcounterEnv(t)
		t.Setenv(tc.env, "soon")
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), tc.args, &stdout, &stderr); code != exitUsage {
			t.Fatalf("%q with bad $%s = %d, want %d", tc.args, tc.env, code, exitUsage)
		}
		if !strings.Contains(stderr.String(), `invalid value "soon" for $`+tc.env) {
			t.Fatalf("%q: stderr does not name $%s: %q", tc.args, tc.env, stderr.String())
		}
	}
}

// envFlag parses no arguments for c, fills its flags from the environment
// and returns the value of --name.
func envFlag(t *testing.T, c *cobra.Command, name string) string {
	t.Helper()
	if err := c.Flags().Parse(nil); err != nil {
		t.Fatal(err)
	}
	if err := applyEnv(c.Flags()); err != nil {
		t.Fatal(err)
	}
	return c.Flags().Lookup(name).Value.String()
}

// A server's flag is read from a variable scoped to its command before the
// shared one, and never from another command's; a client verb reads only
// its connection variables, and only the shared ones.
func TestEnvScopes(t *testing.T) {
	clearDcounterEnv(t)
	t.Setenv("DCOUNTER_NODE_HTTP_ADDR", "10.9.9.9:8080")
	if got := envFlag(t, gatewayCommand(), "http-addr"); got != "127.0.0.1:8000" {
		t.Errorf("gateway with only $DCOUNTER_NODE_HTTP_ADDR set: --http-addr %q, want its default", got)
	}
	if got := envFlag(t, nodeCommand(), "http-addr"); got != "10.9.9.9:8080" {
		t.Errorf("node with $DCOUNTER_NODE_HTTP_ADDR: --http-addr %q", got)
	}
	t.Setenv("DCOUNTER_HTTP_ADDR", "shared:1")
	if got := envFlag(t, gatewayCommand(), "http-addr"); got != "shared:1" {
		t.Errorf("gateway with $DCOUNTER_HTTP_ADDR: %q", got)
	}
	if got := envFlag(t, nodeCommand(), "http-addr"); got != "10.9.9.9:8080" {
		t.Errorf("node with both: %q, want its scoped variable's", got)
	}
	t.Setenv("DCOUNTER_GATEWAY_HTTP_ADDR", "mine:2")
	if got := envFlag(t, gatewayCommand(), "http-addr"); got != "mine:2" {
		t.Errorf("gateway with $DCOUNTER_GATEWAY_HTTP_ADDR: %q", got)
	}
	if got := envFlag(t, discoveryCommand(), "http-addr"); got != "shared:1" {
		t.Errorf("discovery read another server's variable: %q", got)
	}
	t.Setenv("DCOUNTER_BY", "1000")
	t.Setenv("DCOUNTER_INC_ADDR", "http://scoped:1")
	t.Setenv("DCOUNTER_ADDR", "http://shared:1")
	if got := envFlag(t, counterCommand("inc", ""), "by"); got != "1" {
		t.Errorf("inc read $DCOUNTER_BY: --by %s", got)
	}
	if got := envFlag(t, counterCommand("inc", ""), "addr"); got != "http://shared:1" {
		t.Errorf("inc: --addr %s, want $DCOUNTER_ADDR's", got)
	}
}

// The scoped variable reaches the gateway's checks through the real
// command: a refusal names the address it came from.
func TestGatewayReadsItsScopedVariable(t *testing.T) {
	clearDcounterEnv(t)
	t.Setenv("DCOUNTER_NODE_HTTP_ADDR", "0.0.0.0:8080")
	t.Setenv("DCOUNTER_GATEWAY_HTTP_ADDR", "10.1.2.3:8000")
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"gateway", "--nodes", "http://127.0.0.1:1"}, &stdout, &stderr); code != exitUsage {
		t.Fatalf("gateway = %d, want %d; stderr: %s", code, exitUsage, stderr.String())
	}
	if !strings.Contains(stderr.String(), "--http-addr 10.1.2.3:8000") || strings.Contains(stderr.String(), "0.0.0.0") {
		t.Fatalf("stderr = %q, want the gateway's own address", stderr.String())
	}
}

// TestRunNodeRejectsBadConfig covers the checks runNode makes before it
// starts anything; every case must fail, so no node is ever started.
func TestRunNodeRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"positional argument", nil, []string{"extra"}, `unexpected argument "extra"`},
		{"bad log level", nil, []string{"--log-level", "loud"}, "--log-level"},
		{"bad log format", nil, []string{"--log-format", "xml"}, "--log-format"},
		{"short cluster key", nil, []string{"--cluster-key", base64.StdEncoding.EncodeToString(make([]byte, 16))}, "--cluster-key: clusterkey: invalid key: key 1 is 16 bytes, want 32 (make one with 'dcounter keygen')"},
		{"short second cluster key", nil, []string{"--cluster-key", base64.StdEncoding.EncodeToString(make([]byte, 32)) + "," + base64.StdEncoding.EncodeToString(make([]byte, 8))}, "key 2 is 8 bytes"},
		{"cluster key from env", map[string]string{"DCOUNTER_CLUSTER_KEY": "not base64!"}, nil, "--cluster-key: clusterkey: invalid key: key 1 is not valid base64"},
		{"wildcard gossip address", nil, []string{"--in-memory", "--insecure-gossip", "--gossip-addr", "0.0.0.0:7946"}, "--advertise-addr"},
		{"wildcard gossip address from env", map[string]string{"DCOUNTER_GOSSIP_ADDR": ":7946"}, []string{"--in-memory", "--insecure-gossip"}, "--advertise-addr"},
		{"reachable gossip without a key", nil, []string{"--in-memory", "--gossip-addr", "10.1.2.3:7946"}, "--cluster-key"},
		{"hostname gossip without a key", nil, []string{"--in-memory", "--gossip-addr", "node1.example:7946"}, "--insecure-gossip"},
		{"no data dir", nil, nil, "--data-dir is required"},
		{"data dir and in-memory", nil, []string{"--in-memory", "--data-dir", "/tmp/x"}, "exclude each other"},
		{"bad fsync policy", nil, []string{"--in-memory", "--fsync", "sometimes"}, "--fsync"},
		{"delta gap above its limit", nil, []string{"--in-memory", "--delta-gap", "2s"}, "delta-gap must be at most 1s (got 2s)"},
		{"negative delta gap from env", map[string]string{"DCOUNTER_DELTA_GAP": "-5ms"}, []string{"--in-memory"}, "delta-gap must not be negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearDcounterEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), append([]string{"node"}, tc.args...), &stdout, &stderr); code != exitUsage {
				t.Fatalf("node %q = %d, want %d; stderr: %s", tc.args, code, exitUsage, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("stderr = %q, want it to contain %q", stderr.String(), tc.want)
			}
		})
	}
}

func TestCheckAdvertise(t *testing.T) {
	tests := []struct {
		listen, advertise string
		wantErr           bool
	}{
		{"0.0.0.0:7946", "", true},
		{":7946", "", true},
		{"[::]:7946", "", true},
		{"0.0.0.0:7946", "10.0.0.5:7946", false},
		{":7946", "node1.example:7946", false},
		{"[::]:7946", "[2001:db8::1]:7946", false},
		{"127.0.0.1:7946", "", false},
		{"10.0.0.5:7946", "", false},
		{"[::1]:7946", "", false},
		{"localhost:7946", "", false},
	}
	for _, tc := range tests {
		err := checkAdvertise(tc.listen, tc.advertise)
		if (err != nil) != tc.wantErr {
			t.Errorf("checkAdvertise(%q, %q) = %v, want error: %v", tc.listen, tc.advertise, err, tc.wantErr)
			continue
		}
		if err != nil && (!strings.Contains(err.Error(), tc.listen) || !strings.Contains(err.Error(), "--advertise-addr")) {
			t.Errorf("checkAdvertise(%q, %q) error %q should name the address and --advertise-addr", tc.listen, tc.advertise, err)
		}
	}
}

func TestSplitList(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"a", []string{"a"}},
		{"a,b", []string{"a", "b"}},
		{" a , b ,c ", []string{"a", "b", "c"}},
		{"a,,b,", []string{"a", "b"}},
		{",, , ,", nil},
		{"10.0.0.1:7946, 10.0.0.2:7946", []string{"10.0.0.1:7946", "10.0.0.2:7946"}},
	}
	for _, tc := range tests {
		if got := splitList(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("splitList(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestKeygen(t *testing.T) {
	clearDcounterEnv(t)
	var keys []string
	for range 2 {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), []string{"keygen"}, &stdout, &stderr); code != 0 {
			t.Fatalf("keygen = %d; stderr: %s", code, stderr.String())
		}
		if stderr.Len() != 0 {
			t.Errorf("keygen wrote to stderr: %q", stderr.String())
		}
		out := stdout.String()
		if !strings.HasSuffix(out, "\n") || strings.Count(out, "\n") != 1 {
			t.Fatalf("keygen output %q is not one line", out)
		}
		k, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(out, "\n"))
		if err != nil || len(k) != 32 {
			t.Fatalf("keygen output %q: decoded %d bytes, err %v; want 32 bytes", out, len(k), err)
		}
		if _, err := clusterkey.Parse(out); err != nil {
			t.Fatalf("clusterkey.Parse rejects keygen output: %v", err)
		}
		keys = append(keys, out)
	}
	if keys[0] == keys[1] {
		t.Fatalf("two keygen runs printed the same key %q", keys[0])
	}
}

func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"version"}, &stdout, &stderr); code != 0 {
		t.Fatalf("version = %d", code)
	}
	if got := stdout.String(); got != "dcounter dev\n" {
		t.Fatalf("version printed %q, want %q", got, "dcounter dev\n")
	}
	if stderr.Len() != 0 {
		t.Fatalf("version wrote to stderr: %q", stderr.String())
	}
}

func TestCheckExposure(t *testing.T) {
	for _, c := range []struct {
		af      apiFlags
		addr    string
		refused bool
	}{
		{apiFlags{withAuth: true}, "127.0.0.1:8080", false},
		{apiFlags{withAuth: true}, "[::1]:8080", false},
		{apiFlags{withAuth: true}, "localhost:8080", false},
		{apiFlags{withAuth: true}, "0.0.0.0:8080", true},
		{apiFlags{withAuth: true}, ":8080", true},
		{apiFlags{withAuth: true}, "10.1.2.3:8080", true},
		{apiFlags{withAuth: true}, "[::]:8080", true},
		{apiFlags{withAuth: true, insecureAPI: true}, "0.0.0.0:8080", false},
		{apiFlags{withAuth: true, authFile: "tokens"}, "0.0.0.0:8080", false},
		{apiFlags{withAuth: true, tlsCert: "c", tlsKey: "k"}, "0.0.0.0:8080", true}, // TLS is not authentication
		{apiFlags{}, "0.0.0.0:8500", false},                                         // discovery: its own rules
	} {
		err := c.af.checkExposure("--http-addr", c.addr)
		if (err != nil) != c.refused {
			t.Errorf("%+v on %s: %v, want refused=%v", c.af, c.addr, err, c.refused)
		}
		if err != nil && (!strings.Contains(err.Error(), "--auth-file") || !strings.Contains(err.Error(), "--insecure-api")) {
			t.Errorf("error does not say how to fix it: %v", err)
		}
	}
}
