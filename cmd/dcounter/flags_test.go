package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/clusterkey"
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

// testFlags mirrors a client verb's flags.
type testFlags struct {
	fs      *flagSet
	stderr  *bytes.Buffer
	by      *uint64
	addr    *string
	timeout *time.Duration
	verbose *bool
}

func newTestFlags(t *testing.T) testFlags {
	t.Helper()
	clearDcounterEnv(t)
	var stderr bytes.Buffer
	fs := newFlagSet("inc", "inc [KEY] [--by N]", "Increments a counter.", &stderr)
	return testFlags{
		fs:      fs,
		stderr:  &stderr,
		by:      fs.Uint64("by", 1, "positive `amount` to add"),
		addr:    fs.String("addr", defaultAddr, "`URL` of a node"),
		timeout: fs.Duration("timeout", 5*time.Second, "request `timeout`"),
		verbose: fs.Bool("verbose", false, "say more"),
	}
}

func TestEnvName(t *testing.T) {
	tests := []struct{ flag, want string }{
		{"gossip-addr", "DCOUNTER_GOSSIP_ADDR"},
		{"by", "DCOUNTER_BY"},
		{"cluster-key", "DCOUNTER_CLUSTER_KEY"},
		{"join-timeout", "DCOUNTER_JOIN_TIMEOUT"},
		{"a-b-c", "DCOUNTER_A_B_C"},
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
		{name: "nothing", args: nil, pos: nil, by: 1},
		{name: "flag after positional", args: []string{"mykey", "--by", "5"}, pos: []string{"mykey"}, by: 5},
		{name: "flag before positional", args: []string{"--by", "5", "mykey"}, pos: []string{"mykey"}, by: 5},
		{name: "interleaved", args: []string{"a", "--by=5", "b", "-verbose", "c"}, pos: []string{"a", "b", "c"}, by: 5, verbose: true},
		{name: "only positionals", args: []string{"a", "b"}, pos: []string{"a", "b"}, by: 1},
		{name: "double dash ends flags after a positional", args: []string{"mykey", "--", "--by", "5"}, pos: []string{"mykey", "--by", "5"}, by: 1},
		{name: "double dash first", args: []string{"--", "--by", "5"}, pos: []string{"--by", "5"}, by: 1},
		{name: "double dash after flags", args: []string{"--by", "5", "--", "-x"}, pos: []string{"-x"}, by: 5},
		{name: "dash-leading key after double dash", args: []string{"--", "-5"}, pos: []string{"-5"}, by: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newTestFlags(t)
			pos, err := f.fs.parse(tc.args)
			if err != nil {
				t.Fatalf("parse(%q): %v", tc.args, err)
			}
			if !slices.Equal(pos, tc.pos) {
				t.Errorf("positional = %q, want %q", pos, tc.pos)
			}
			if *f.by != tc.by || *f.verbose != tc.verbose {
				t.Errorf("by=%d verbose=%v, want by=%d verbose=%v", *f.by, *f.verbose, tc.by, tc.verbose)
			}
		})
	}
}

func TestParseDoubleDashBeforePositional(t *testing.T) {
	tests := []struct {
		args []string
		pos  []string
	}{
		{[]string{"--", "mykey", "--by", "5"}, []string{"mykey", "--by", "5"}},
		{[]string{"a", "--", "b", "--by", "5"}, []string{"a", "b", "--by", "5"}},
		{[]string{"--", "--"}, []string{"--"}}, // the second "--" is a positional, but is dropped
	}
	for _, tc := range tests {
		f := newTestFlags(t)
		pos, err := f.fs.parse(tc.args)
		if err != nil {
			t.Fatalf("parse(%q): %v", tc.args, err)
		}
		if !slices.Equal(pos, tc.pos) || *f.by != 1 {
			t.Errorf("parse(%q): positional = %q, by = %d; want %q, by = 1", tc.args, pos, *f.by, tc.pos)
		}
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
			name: "unrelated variables are ignored",
			env:  map[string]string{"DCOUNTER_NOPE": "x", "BY": "9"},
			by:   1, addr: defaultAddr, timeout: 5 * time.Second,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newTestFlags(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			if _, err := f.fs.parse(tc.args); err != nil {
				t.Fatalf("parse: %v", err)
			}
			if *f.by != tc.by || *f.addr != tc.addr || *f.timeout != tc.timeout || *f.verbose != tc.verbose {
				t.Errorf("got by=%d addr=%q timeout=%v verbose=%v\nwant by=%d addr=%q timeout=%v verbose=%v",
					*f.by, *f.addr, *f.timeout, *f.verbose, tc.by, tc.addr, tc.timeout, tc.verbose)
			}
		})
	}
}

func TestParseInvalidEnv(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want []string // substrings of the error
	}{
		{"not a number", map[string]string{"DCOUNTER_BY": "lots"}, []string{`"lots"`, "$DCOUNTER_BY"}},
		{"negative", map[string]string{"DCOUNTER_BY": "-1"}, []string{"$DCOUNTER_BY"}},
		{"bad duration", map[string]string{"DCOUNTER_TIMEOUT": "soon"}, []string{`"soon"`, "$DCOUNTER_TIMEOUT"}},
		{"bad bool", map[string]string{"DCOUNTER_VERBOSE": "maybe"}, []string{"$DCOUNTER_VERBOSE"}},
		{"every bad variable is named", map[string]string{"DCOUNTER_BY": "x", "DCOUNTER_TIMEOUT": "y"}, []string{"$DCOUNTER_BY", "$DCOUNTER_TIMEOUT"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newTestFlags(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			pos, err := f.fs.parse([]string{"key"})
			if err == nil {
				t.Fatalf("parse succeeded with pos %q, want an error", pos)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
				if !strings.Contains(f.stderr.String(), w) {
					t.Errorf("stderr %q does not mention %q", f.stderr, w)
				}
			}
		})
	}
}

func TestParseHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"-help"}, {"mykey", "--help"}, {"--by", "5", "--help"}} {
		f := newTestFlags(t)
		if _, err := f.fs.parse(args); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("parse(%q) error = %v, want flag.ErrHelp", args, err)
		}
		if f.stderr.Len() != 0 {
			t.Errorf("parse(%q) wrote to stderr: %q", args, f.stderr)
		}
	}
}

func TestParseOrExitHelp(t *testing.T) {
	f := newTestFlags(t)
	var stdout bytes.Buffer
	pos, code, ok := f.fs.parseOrExit([]string{"--help"}, &stdout)
	if ok || code != 0 || pos != nil {
		t.Fatalf("parseOrExit(--help) = %q, %d, %v; want nil, 0, false", pos, code, ok)
	}
	if f.stderr.Len() != 0 {
		t.Errorf("help wrote to stderr: %q", f.stderr)
	}
	out := stdout.String()
	if !strings.HasPrefix(out, "Usage: dcounter inc [KEY] [--by N]\n") || !strings.Contains(out, "Increments a counter.") {
		t.Errorf("usage does not start with the synopsis and help:\n%s", out)
	}
	checkFlagsListed(t, out, f.fs)
	if !strings.Contains(out, "(default "+defaultAddr+")") || !strings.Contains(out, "(default 5s)") {
		t.Errorf("usage does not show non-zero defaults:\n%s", out)
	}
}

// checkFlagsListed checks that usage has a line for every flag of fs that
// names its environment variable.
func checkFlagsListed(t *testing.T, usage string, fs *flagSet) {
	t.Helper()
	lines := strings.Split(usage, "\n")
	fs.VisitAll(func(f *flag.Flag) {
		found := slices.ContainsFunc(lines, func(l string) bool {
			return strings.HasPrefix(l, "  --"+f.Name+" ") && strings.Contains(l, "$"+envName(f.Name)+"]")
		})
		if !found {
			t.Errorf("usage has no line for --%s with [$%s]:\n%s", f.Name, envName(f.Name), usage)
		}
	})
}

func TestParseOrExitErrors(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"unknown flag", nil, []string{"key", "--nope"}, "flag provided but not defined: --nope"},
		{"bad flag value", nil, []string{"--by", "x"}, `invalid value "x" for flag --by`},
		{"missing flag value", nil, []string{"--by"}, "flag needs an argument: --by"},
		{"bad env value", map[string]string{"DCOUNTER_BY": "x"}, nil, "$DCOUNTER_BY"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newTestFlags(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var stdout bytes.Buffer
			_, code, ok := f.fs.parseOrExit(tc.args, &stdout)
			if ok || code != exitUsage {
				t.Fatalf("parseOrExit(%q) = code %d, ok %v; want %d, false", tc.args, code, ok, exitUsage)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout = %q, want nothing", stdout.String())
			}
			errOut := f.stderr.String()
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
		{name: "flag instead of command", args: []string{"--by", "5"}, code: exitUsage, errWant: `unknown command "--by"`},
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
			if !strings.Contains(u, "Usage:\n  dcounter <command> [arguments]") {
				t.Errorf("no usage in output:\n%s", u)
			}
			for _, c := range commands() {
				if !strings.Contains(u, "  "+c.name+" ") {
					t.Errorf("usage does not list command %q:\n%s", c.name, u)
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
		if c.name == "version" { // takes no flags
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			clearDcounterEnv(t)
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), []string{c.name, "--help"}, &stdout, &stderr); code != 0 {
				t.Fatalf("%s --help = %d, want 0; stderr: %s", c.name, code, stderr.String())
			}
			if stderr.Len() != 0 {
				t.Errorf("stderr = %q, want nothing", stderr.String())
			}
			if out := stdout.String(); !strings.HasPrefix(out, "Usage: dcounter "+c.name) {
				t.Errorf("%s --help output:\n%s", c.name, out)
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
		"cluster", "cluster-key", "data-dir", "sync-interval", "fanout", "debug-addr", "log-level", "log-format",
	} {
		if !strings.Contains(out, "  --"+name+" ") || !strings.Contains(out, "$"+envName(name)+"]") {
			t.Errorf("node --help does not list --%s with $%s", name, envName(name))
		}
	}
}

func TestRunUnknownFlag(t *testing.T) {
	for _, args := range [][]string{{"get", "--nope"}, {"inc", "key", "--bogus=1"}, {"node", "--nope"}, {"keygen", "--nope"}, {"status", "-x"}} {
		clearDcounterEnv(t)
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != exitUsage {
			t.Errorf("run(%q) = %d, want %d", args, code, exitUsage)
		}
		if !strings.Contains(stderr.String(), "flag provided but not defined") || !strings.Contains(stderr.String(), "--help' for usage") {
			t.Errorf("run(%q) stderr = %q", args, stderr.String())
		}
		if stdout.Len() != 0 {
			t.Errorf("run(%q) stdout = %q, want nothing", args, stdout.String())
		}
	}
}

func TestRunInvalidEnv(t *testing.T) {
	clearDcounterEnv(t)
	t.Setenv("DCOUNTER_TIMEOUT", "soon")
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"get", "key"}, &stdout, &stderr); code != exitUsage {
		t.Fatalf("get with bad $DCOUNTER_TIMEOUT = %d, want %d", code, exitUsage)
	}
	if !strings.Contains(stderr.String(), "$DCOUNTER_TIMEOUT") {
		t.Fatalf("stderr does not name the variable: %q", stderr.String())
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

// A server's flag is read from a variable scoped to its command before the
// shared one; a client verb reads only its connection variables.
func TestEnvScopes(t *testing.T) {
	clearDcounterEnv(t)
	parse := func(cmd string, client bool) string {
		t.Helper()
		fs := newFlagSet(cmd, cmd, "", io.Discard)
		addr := fs.String("http-addr", "default", "")
		if client {
			fs.envOnly("addr")
		}
		if _, err := fs.parse(nil); err != nil {
			t.Fatal(err)
		}
		return *addr
	}
	t.Setenv("DCOUNTER_HTTP_ADDR", "shared")
	if got := parse("gateway", false); got != "shared" {
		t.Errorf("gateway with only $DCOUNTER_HTTP_ADDR: %q", got)
	}
	t.Setenv("DCOUNTER_GATEWAY_HTTP_ADDR", "mine")
	if got := parse("gateway", false); got != "mine" {
		t.Errorf("gateway with $DCOUNTER_GATEWAY_HTTP_ADDR: %q", got)
	}
	if got := parse("node", false); got != "shared" {
		t.Errorf("node read the gateway's variable: %q", got)
	}
	if got := parse("inc", true); got != "default" {
		t.Errorf("a client verb read $DCOUNTER_HTTP_ADDR: %q", got)
	}
}
