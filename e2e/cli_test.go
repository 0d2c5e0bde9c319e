package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestCLIVerbs(t *testing.T) {
	p := startNode(t, "solo", "")
	env := []string{"DCOUNTER_ADDR=" + p.HTTP}
	steps := []struct {
		args []string
		want string
	}{
		{[]string{"get"}, "0"},
		{[]string{"inc"}, "1"},
		{[]string{"inc", "--by", "41"}, "42"},
		{[]string{"dec", "default", "--by", "50"}, "-8"},
		{[]string{"inc", "page/home", "--by", "3"}, "3"}, // a key with a slash
		{[]string{"get", "page/home"}, "3"},
		{[]string{"get", "--addr", p.HTTP, "page/home"}, "3"},
	}
	for _, s := range steps {
		out, errOut, code := runCLI(t, env, s.args...)
		if code != 0 || strings.TrimSpace(out) != s.want {
			t.Fatalf("dcounter %v = %q (exit %d, stderr %q), want %q", s.args, out, code, errOut, s.want)
		}
	}
	if out, _, _ := runCLI(t, env, "nodes"); !strings.Contains(out, "solo") || !strings.Contains(out, "alive") {
		t.Errorf("dcounter nodes: %q", out)
	}
	if _, _, code := runCLI(t, nil, "health", p.HTTP); code != 0 {
		t.Errorf("dcounter health on a live node exited %d", code)
	}
	// Errors are explained and exit non-zero.
	bad := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"inc", "--by", "0"}, 2, "positive"},
		{[]string{"inc", "--by", "-3"}, 2, "invalid value"},
		{[]string{"inc", "a", "b"}, 2, "at most one KEY"},
		{[]string{"frobnicate"}, 2, "unknown command"},
		{[]string{"get", "--addr", "http://127.0.0.1:1"}, 1, "refused"},
		{[]string{"inc", strings.Repeat("k", 513)}, 1, "512 bytes"},
		{[]string{"health", "http://127.0.0.1:1"}, 1, "refused"},
	}
	for _, b := range bad {
		_, errOut, code := runCLI(t, env, b.args...)
		if code != b.code || !strings.Contains(errOut, b.msg) {
			t.Errorf("dcounter %v: exit %d stderr %q; want exit %d mentioning %q", b.args, code, errOut, b.code, b.msg)
		}
	}
}

func TestHelpExplainsEveryFlag(t *testing.T) {
	out, _, code := runCLI(t, nil, "--help")
	if code != 0 || !strings.Contains(out, "node") || !strings.Contains(out, "DCOUNTER_") {
		t.Fatalf("dcounter --help: exit %d, %q", code, out)
	}
	out, _, code = runCLI(t, nil, "node", "--help")
	for _, f := range []string{"--name", "--gossip-addr", "--http-addr", "--advertise-addr", "--join", "--cluster",
		"--cluster-key", "--data-dir", "--sync-interval", "--fanout", "--log-level", "--log-format", "$DCOUNTER_GOSSIP_ADDR"} {
		if code != 0 || !strings.Contains(out, f) {
			t.Errorf("dcounter node --help lacks %s (exit %d)", f, code)
		}
	}
}

func TestNodeFlagsFromEnvironment(t *testing.T) {
	p := startNode(t, "env", "")
	// A second node configured only through the environment joins the first.
	gp, hp := freePort(t), freePort(t)
	q := &proc{t: t, name: "env2", Gossip: "127.0.0.1:" + itoa(gp), HTTP: "http://127.0.0.1:" + itoa(hp)}
	q.args = []string{"node"}
	q.startWithEnv([]string{
		"DCOUNTER_NAME=env2", "DCOUNTER_GOSSIP_ADDR=" + q.Gossip, "DCOUNTER_HTTP_ADDR=127.0.0.1:" + itoa(hp),
		"DCOUNTER_JOIN=" + p.Gossip, "DCOUNTER_DATA_DIR=" + t.TempDir(),
	})
	out, _, _ := runCLI(t, nil, "nodes", "--addr", p.HTTP)
	waitFor(t, 5*time.Second, func() error {
		out, _, _ = runCLI(t, nil, "nodes", "--addr", p.HTTP)
		if !strings.Contains(out, "env2") {
			return errString("env2 not a member: " + out)
		}
		return nil
	}, true)
}

func TestJoinFailsClearlyUnlessBootstrap(t *testing.T) {
	dead := "127.0.0.1:" + itoa(freePort(t))
	_, errOut, code := runCLI(t, nil, "node", "--in-memory", "--gossip-addr", "127.0.0.1:"+itoa(freePort(t)),
		"--http-addr", "127.0.0.1:"+itoa(freePort(t)), "--join", dead, "--join-timeout", "500ms")
	if code == 0 || !strings.Contains(errOut, "could not join") || !strings.Contains(errOut, "--bootstrap") {
		t.Fatalf("join to a dead address: exit %d, stderr %q", code, errOut)
	}
	p := startNode(t, "boot", "", "--join", dead, "--join-timeout", "300ms", "--bootstrap")
	if _, err := p.get("/health"); err != nil {
		t.Fatal(err)
	}
}

// TestRestartedNodeKeepsEveryAcknowledgedWrite restarts a node (kill -9)
// with its data dir and keeps writing to it: no acknowledged write may be
// lost, neither those made before the restart (peers hold them) nor after.
func TestRestartedNodeKeepsEveryAcknowledgedWrite(t *testing.T) {
	nodes := startCluster(t, 2)
	a, b := nodes[0], nodes[1]
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		if err := b.add(ctx, "k", 1); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, func() error { return expectValue(a, "k", 10) }, true)
	b.kill()
	b.start()
	for i := 0; i < 3; i++ {
		if err := b.add(ctx, "k", 1); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range nodes {
		waitFor(t, 5*time.Second, func() error { return expectValue(p, "k", 13) }, true)
	}
}

// TestCLIBehaves: usage errors exit 2 and spell flags --name, only the
// connection variables reach client verbs, every verb speaks --json,
// members is nodes, health reads DCOUNTER_ADDR, --addr fails over, and
// completion scripts are printed for bash, zsh and fish.
func TestCLIBehaves(t *testing.T) {
	p := startNode(t, "solo", "")
	env := []string{"DCOUNTER_ADDR=" + p.HTTP}
	dead := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))

	// A verb's own settings never come from the environment.
	if out, errOut, code := runCLI(t, append(env, "DCOUNTER_BY=1000", "DCOUNTER_JSON=true"), "inc", "scoped"); code != 0 || strings.TrimSpace(out) != "1" {
		t.Errorf("DCOUNTER_BY=1000 dcounter inc = %q (exit %d, %s), want 1", out, code, errOut)
	}
	for _, b := range []struct {
		args []string
		msg  string
	}{
		{[]string{"inc", "--bogus"}, "--bogus"},
		{[]string{"get", "--by", "2"}, "--by"},
		{[]string{"inc", "--by", "x"}, "--by"},
		{[]string{"nodes", "extra"}, "unexpected argument"},
		{[]string{"members", "extra"}, "unexpected argument"},
		{[]string{"status", "extra"}, "unexpected argument"},
		{[]string{"health", "a", "b"}, "at most one URL"},
		{[]string{"keygen", "extra"}, "unexpected argument"},
		{[]string{"version", "extra"}, "unexpected argument"},
		{[]string{"completion"}, "want one shell"},
		{[]string{"completion", "tcsh"}, "unknown shell"},
	} {
		_, errOut, code := runCLI(t, env, b.args...)
		if code != 2 || !strings.Contains(errOut, b.msg) || regexp.MustCompile(`(^|[^-])-(bogus|by)\b`).MatchString(errOut) {
			t.Errorf("dcounter %q: exit %d, stderr %q; want 2 mentioning %q with two dashes", b.args, code, errOut, b.msg)
		}
	}
	// --json on every verb.
	for _, args := range [][]string{
		{"inc", "j", "--json"}, {"dec", "j", "--json"}, {"get", "j", "--json"}, {"ttl", "j", "60", "--json"},
		{"persist", "j", "--json"}, {"keys", "j", "--json"}, {"nodes", "--json"}, {"members", "--json"},
		{"status", "--json"}, {"health", "--json"}, {"del", "j", "--json"}, {"keygen", "--json"}, {"version", "--json"},
	} {
		out, errOut, code := runCLI(t, env, args...)
		var v any
		if code != 0 || json.Unmarshal([]byte(out), &v) != nil {
			t.Errorf("dcounter %q: exit %d, stdout %q, stderr %q; want one JSON value", args, code, out, errOut)
		}
	}
	if out, _, code := runCLI(t, env, "members"); code != 0 || !strings.Contains(out, "solo") {
		t.Errorf("dcounter members: exit %d, %q", code, out)
	}
	// health reads DCOUNTER_ADDR; a URL argument wins over it.
	if _, errOut, code := runCLI(t, env, "health"); code != 0 {
		t.Errorf("DCOUNTER_ADDR=live dcounter health: exit %d, %s", code, errOut)
	}
	if _, _, code := runCLI(t, []string{"DCOUNTER_ADDR=" + dead}, "health"); code != 1 {
		t.Errorf("DCOUNTER_ADDR=dead dcounter health: exit %d, want 1", code)
	}
	if _, _, code := runCLI(t, []string{"DCOUNTER_ADDR=" + dead}, "health", p.HTTP); code != 0 {
		t.Errorf("dcounter health LIVE with DCOUNTER_ADDR=dead: exit %d, want 0", code)
	}
	// The same --idempotency-key twice: applied once, both answered.
	for range 2 {
		if out, errOut, code := runCLI(t, env, "inc", "idem", "--by", "5", "--idempotency-key", "order-17"); code != 0 || strings.TrimSpace(out) != "5" {
			t.Errorf("inc --idempotency-key = %q (exit %d, %s), want 5 both times", out, code, errOut)
		}
	}
	if _, errOut, code := runCLI(t, env, "inc", "idem", "--idempotency-key", "has space"); code != 2 || !strings.Contains(errOut, "--idempotency-key") {
		t.Errorf("inc --idempotency-key 'has space': exit %d, %s", code, errOut)
	}
	// Several endpoints: a dead one is skipped.
	if out, errOut, code := runCLI(t, nil, "inc", "fo", "--addr", dead+","+p.HTTP); code != 0 || strings.TrimSpace(out) != "1" {
		t.Errorf("inc --addr dead,live = %q (exit %d, %s)", out, code, errOut)
	}
	// The scripts ask the binary what to complete (dcounter __complete).
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"__complete", "mem"}, "members"},
		{[]string{"__complete", "inc", "--ttl-"}, "--ttl-always"},
	} {
		if out, errOut, code := runCLI(t, nil, c.args...); code != 0 || !strings.Contains(out, c.want) {
			t.Errorf("dcounter %q: exit %d, stderr %q, completions:\n%s", c.args, code, errOut, out)
		}
	}
	for _, sh := range []string{"bash", "zsh", "fish"} {
		out, errOut, code := runCLI(t, nil, "completion", sh)
		if code != 0 || !strings.Contains(out, "__complete") {
			t.Errorf("completion %s: exit %d, stderr %q, script:\n%s", sh, code, errOut, out)
		}
		if sh == "bash" {
			if bash, err := exec.LookPath("bash"); err == nil {
				cmd := exec.Command(bash, "-n")
				cmd.Stdin = strings.NewReader(out)
				if b, err := cmd.CombinedOutput(); err != nil {
					t.Errorf("bash -n on the completion script: %v: %s", err, b)
				}
			}
		}
	}
}
