package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// redisTool is the path of a Redis command-line tool. CI installs them
// (.ci/run, Debian package redis-tools), so a missing one fails the test
// instead of skipping it.
func redisTool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is needed (Debian package redis-tools, which .ci/run installs): %v", name, err)
	}
	return path
}

// redisCLI runs redis-cli against addr (host:port) with args, stdin as its
// input, and returns its output. Its stdout is not a terminal, so it prints
// replies raw, as scripts see them: one line per value, an empty line for
// a nil, an error's text followed by an empty line. A run that fails or
// exits non-zero fails the test.
func redisCLI(t testing.TB, addr, stdin string, args ...string) string {
	t.Helper()
	redisTool(t, "redis-cli")
	out, err := runRedisCLI(addr, stdin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// runRedisCLI is redisCLI for any goroutine: it returns what went wrong.
func runRedisCLI(addr, stdin string, args ...string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	cmd := exec.Command("redis-cli", append([]string{"-h", host, "-p", port}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		err = fmt.Errorf("no exit within 30s")
	}
	if err != nil {
		return out.String(), fmt.Errorf("redis-cli %q: %w\n%s%s", args, err, out.String(), errOut.String())
	}
	return out.String(), nil
}

// TestRESPRedisCLICommands runs redis-cli against a node, one process per
// command and then one session fed on stdin, and checks every output
// byte for byte against what redis-cli prints for redis-server.
func TestRESPRedisCLICommands(t *testing.T) {
	node := startNode(t, "r1", "", withRESP)
	cli := func(args ...string) string { t.Helper(); return redisCLI(t, node.RESP, "", args...) }

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"PING"}, "PONG\n"},
		{[]string{"ECHO", "hello world"}, "hello world\n"},
		{[]string{"INCR", "a"}, "1\n"},
		{[]string{"INCRBY", "a", "10"}, "11\n"},
		{[]string{"DECRBY", "a", "3"}, "8\n"},
		{[]string{"DECR", "a"}, "7\n"},
		{[]string{"GET", "a"}, "7\n"},
		{[]string{"GET", "nope"}, "\n"},
		{[]string{"MGET", "a", "nope", "a"}, "7\n\n7\n"},
		{[]string{"EXISTS", "a", "nope", "a"}, "2\n"},
		{[]string{"INCRBY", "b", "-5"}, "-5\n"},
		{[]string{"DBSIZE"}, "2\n"},
		{[]string{"TTL", "a"}, "-1\n"},
		{[]string{"TTL", "nope"}, "-2\n"},
		{[]string{"PTTL", "nope"}, "-2\n"},
		{[]string{"EXPIRE", "a", "100"}, "1\n"},
		{[]string{"EXPIRE", "a", "200", "NX"}, "0\n"},
		{[]string{"EXPIRE", "a", "200", "XX"}, "1\n"},
		{[]string{"EXPIRE", "nope", "100"}, "0\n"},
		{[]string{"PERSIST", "a"}, "1\n"},
		{[]string{"PERSIST", "a"}, "0\n"},
		{[]string{"TTL", "a"}, "-1\n"},
		{[]string{"GETDEL", "a"}, "7\n"},
		{[]string{"GETDEL", "a"}, "\n"},
		{[]string{"GET", "a"}, "\n"},
		{[]string{"EXISTS", "a"}, "0\n"},
		{[]string{"DEL", "b", "nope"}, "1\n"},
		{[]string{"DBSIZE"}, "0\n"},
		{[]string{"INCR", "a"}, "1\n"}, // a deleted counter starts again from 0
		{[]string{"UNLINK", "a"}, "1\n"},
		{[]string{"INCRBY", "a", "abc"}, "ERR value is not an integer or out of range\n\n"},
		{[]string{"INCRBY", "a", "9223372036854775807"}, "9223372036854775807\n"},
		{[]string{"INCR", "a"}, "ERR increment or decrement would overflow\n\n"},
		{[]string{"GET", "a"}, "9223372036854775807\n"},
		{[]string{"DEL", "a"}, "1\n"},
		{[]string{"INCR"}, "ERR wrong number of arguments for 'incr' command\n\n"},
		{[]string{"foo", "bar"}, "ERR unknown command 'foo', with args beginning with: 'bar' \n\n"},
		{[]string{"SELECT", "0"}, "OK\n"},
	} {
		if got := cli(c.args...); got != c.want {
			t.Errorf("redis-cli %q = %q, want %q", c.args, got, c.want)
		}
	}

	// TTL is in whole seconds, rounded as Redis rounds it; PTTL counts down.
	cli("INCR", "t")
	if got := cli("EXPIRE", "t", "100"); got != "1\n" {
		t.Fatalf("EXPIRE t 100 = %q", got)
	}
	if got := cli("TTL", "t"); got != "100\n" && got != "99\n" {
		t.Errorf("TTL after EXPIRE 100 = %q, want 100 (or 99 on a slow machine)", got)
	}
	if ms, err := strconv.Atoi(strings.TrimSpace(cli("PTTL", "t"))); err != nil || ms <= 0 || ms > 100_000 {
		t.Errorf("PTTL after EXPIRE 100 = %d %v, want in (0, 100000]", ms, err)
	}
	cli("DEL", "t")

	// SET is not a counter operation: refused with an error, nothing stored.
	if got := cli("SET", "x", "1"); !isErrorLine(got) || !strings.HasPrefix(got, "ERR SET is not supported: ") {
		t.Errorf("SET x 1 = %q, want ERR SET is not supported: …", got)
	}
	if got := cli("SELECT", "1"); got != "ERR DB index is out of range\n\n" {
		t.Errorf("SELECT 1 = %q, want ERR DB index is out of range (one keyspace)", got)
	}
	if got := cli("EXISTS", "x"); got != "0\n" {
		t.Errorf("EXISTS x after a refused SET = %q", got)
	}
	if got := cli("INFO"); !strings.Contains(got, "# dcounter") {
		t.Errorf("INFO has no dcounter section:\n%s", got)
	}

	// One session, commands on stdin, as a script pipes them.
	session := "INCR s\nINCRBY s 5\nDECR s\nGET s\nBOGUS\nMULTI\nINCR s\nINCRBY s 4\nEXEC\nEXISTS s\nDEL s\nGET s\nPING\n"
	want := "1\n6\n5\n5\n" +
		"ERR unknown command 'BOGUS', with args beginning with: \n\n" +
		"OK\nQUEUED\nQUEUED\n6\n10\n" +
		"1\n1\n\nPONG\n"
	if got := redisCLI(t, node.RESP, session); got != want {
		t.Errorf("stdin session:\n got %q\nwant %q", got, want)
	}

	// redis-cli --scan walks SCAN's cursor to the end: each key once.
	var wantKeys []string
	for i := range 30 {
		k := fmt.Sprintf("scan:%02d", i)
		wantKeys = append(wantKeys, k)
		cli("INCR", k)
	}
	cli("INCR", "other")
	for _, c := range []struct {
		pattern string
		want    []string
	}{{"scan:*", wantKeys}, {"scan:1?", wantKeys[10:20]}, {"*:2*", wantKeys[20:]}} {
		got := strings.Fields(cli("--scan", "--pattern", c.pattern))
		slices.Sort(got)
		if !slices.Equal(got, c.want) {
			t.Errorf("redis-cli --scan --pattern %q = %q, want %q", c.pattern, got, c.want)
		}
	}
	if got := strings.Fields(cli("--scan")); len(got) != 31 {
		t.Errorf("redis-cli --scan listed %d keys, want 31: %q", len(got), got)
	}
	if got := cli("DBSIZE"); got != "31\n" {
		t.Errorf("DBSIZE = %q, want 31", got)
	}
}

// isErrorLine reports whether redis-cli's raw output is one error reply:
// an upper-case code, a message, and the empty line redis-cli adds.
func isErrorLine(s string) bool {
	code, _, ok := strings.Cut(s, " ")
	return ok && code != "" && strings.ToUpper(code) == code && strings.HasSuffix(s, "\n\n") && strings.Count(s, "\n") == 2
}

// TestRESPRedisCLIPipeConverges feeds a protocol file of 10,000 INCRBY
// over 100 keys to each node of a three-node cluster at once with
// redis-cli --pipe (mass insertion); every node then reports exactly three
// times the file's totals over HTTP.
func TestRESPRedisCLIPipeConverges(t *testing.T) {
	nodes := startCluster(t, 3, withRESP)
	var proto bytes.Buffer
	want := map[string]int64{}
	for i := range 10_000 {
		key, amount := fmt.Sprintf("pipe:%02d", i%100), strconv.Itoa(i%7+1)
		want[key] += 3 * int64(i%7+1)
		fmt.Fprintf(&proto, "*3\r\n$6\r\nINCRBY\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(key), key, len(amount), amount)
	}
	redisTool(t, "redis-cli")
	var wg sync.WaitGroup
	outs, errs := make([]string, len(nodes)), make([]error, len(nodes))
	for i, p := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = runRedisCLI(p.RESP, proto.String(), "--pipe")
		}()
	}
	wg.Wait()
	for i, out := range outs {
		if errs[i] != nil || !strings.Contains(out, "errors: 0, replies: 10000") {
			t.Fatalf("redis-cli --pipe into %s: %v\n%s", nodes[i].name, errs[i], out)
		}
	}
	waitFor(t, 10*time.Second, func() error {
		for _, p := range nodes {
			for key, v := range want {
				got, err := p.value(key)
				if err != nil {
					return err
				}
				if got != v {
					return fmt.Errorf("%s: %s = %d, want %d", p.name, key, got, v)
				}
			}
		}
		return nil
	}, true)
}

// TestRESPRedisBenchmarkCountsEveryINCR runs redis-benchmark's INCR and GET
// tests, pipelined, against a node with the default --fsync always: it
// must run to the end, and the counter its INCR test writes must hold
// exactly the number of INCRs it sent, each acknowledged once.
func TestRESPRedisBenchmarkCountsEveryINCR(t *testing.T) {
	node := startNode(t, "bench", "", withRESP)
	host, port, _ := net.SplitHostPort(node.RESP)
	// -n is a multiple of -P: redis-benchmark sends whole pipelines.
	cmd := exec.Command(redisTool(t, "redis-benchmark"), "-h", host, "-p", port, "-t", "incr,get", "-n", "20000", "-c", "20", "-P", "16", "-q")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("redis-benchmark: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "INCR: ") || !strings.Contains(string(out), "GET: ") {
		t.Fatalf("redis-benchmark did not report both tests:\n%s", out)
	}
	// Without -r the key is literally counter:__rand_int__.
	if v, err := node.value("counter:__rand_int__"); err != nil || v != 20000 {
		t.Fatalf("counter:__rand_int__ = %d %v, want 20000\nredis-benchmark said:\n%s", v, err, out)
	}
}
