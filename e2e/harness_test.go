// Package e2e tests the built dcounter binary as users run it: real
// processes, real TCP on 127.0.0.1, real signals.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/testutil"
)

var dcounterBin string // path of the dcounter binary built by TestMain

func TestMain(m *testing.M) { os.Exit(testutil.RunWithBinary(m, "../cmd/dcounter", &dcounterBin)) }

// freePort returns a port that was free a moment ago.
func freePort(t testing.TB) int { return testutil.FreePort(t) }

// proc is one running dcounter process.
type proc struct {
	t        testing.TB
	name     string
	args     []string
	wrap     []string // command prefix, e.g. ip netns exec NS
	cmd      *exec.Cmd
	log      *lockedBuffer // this run's output
	pastLogs []string      // the output of earlier runs, for failure reports
	done     chan struct{}
	HTTP     string // base URL of the client API
	Gossip   string // host:port
	RESP     string // host:port of the Redis protocol listener, if started withRESP
	DataDir  string
	exitCode int
	// client, if set, replaces the shared client for this process's API
	// (one trusting a test CA, or sending a token, say).
	client *http.Client
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startNode starts a node named name on 127.0.0.1, joining through join
// (may be empty).
func startNode(t testing.TB, name string, join string, extra ...string) *proc {
	t.Helper()
	p := &proc{
		t: t, name: name,
		Gossip: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		HTTP:   fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
	}
	return p.startAsNode(join, extra...)
}

// withRESP, among a node's extra arguments, gives it a Redis protocol
// listener (--resp-addr) on a free port of 127.0.0.1, kept across restarts
// and found in proc.RESP.
const withRESP = "--resp-addr=127.0.0.1:free"

// startAsNode fills in the node arguments for p's addresses and starts it.
func (p *proc) startAsNode(join string, extra ...string) *proc {
	t, name := p.t, p.name
	t.Helper()
	p.DataDir = filepath.Join(t.TempDir(), name)
	p.args = []string{"node", "--name", name,
		"--gossip-addr", p.Gossip, "--http-addr", hostPort(p.HTTP),
		"--data-dir", p.DataDir, "--log-level", "debug"}
	for _, a := range extra {
		if a == withRESP {
			p.RESP = p.otherFreeAddr()
			a = "--resp-addr=" + p.RESP
		}
		p.args = append(p.args, a)
	}
	if join != "" {
		p.args = append(p.args, "--join", join)
	}
	p.start()
	return p
}

func (p *proc) start() { p.startWithEnv(nil) }

// otherFreeAddr returns a free 127.0.0.1 address on a port that is neither
// p's gossip nor its API port (a port just released is often handed out
// again).
func (p *proc) otherFreeAddr() string {
	for {
		a := fmt.Sprintf("127.0.0.1:%d", freePort(p.t))
		if a != p.Gossip && a != hostPort(p.HTTP) {
			return a
		}
	}
}

func (p *proc) kill() {
	if p.cmd != nil && p.cmd.Process != nil {
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
}

// cleanEnv drops DCOUNTER_* variables so the developer's shell cannot change a test.
func cleanEnv() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "DCOUNTER_") {
			env = append(env, e)
		}
	}
	return env
}

var client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// hostPort strips a URL's scheme.
func hostPort(url string) string {
	if i := strings.Index(url, "://"); i >= 0 {
		return url[i+3:]
	}
	return url
}

// httpClient is the client for p's API.
func (p *proc) httpClient() *http.Client {
	if p.client != nil {
		return p.client
	}
	return client
}

func (p *proc) get(path string) ([]byte, error) {
	resp, err := p.httpClient().Get(p.HTTP + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		return b, fmt.Errorf("GET %s: %s: %s", path, resp.Status, b)
	}
	return b, nil
}

func (p *proc) value(key string) (int64, error) {
	b, err := p.get("/counters/" + key)
	if err != nil {
		return 0, err
	}
	var r struct{ Value int64 }
	if err := json.Unmarshal(b, &r); err != nil {
		return 0, err
	}
	return r.Value, nil
}

// add posts a write and reports whether it was acknowledged.
func (p *proc) add(ctx context.Context, key string, delta int64) error {
	verb, amount := "increment", delta
	if delta < 0 {
		verb, amount = "decrement", -delta
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("%s/counters/%s/%s", p.HTTP, key, verb),
		strings.NewReader(fmt.Sprintf(`{"amount":%d}`, amount)))
	resp, err := p.httpClient().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s", resp.Status)
	}
	return nil
}

// waitFor polls f (testutil.Poll) until it returns nil or timeout passes;
// if fatal, a timeout fails the test with f's last error.
func waitFor(t testing.TB, timeout time.Duration, f func() error, fatal bool) error {
	t.Helper()
	err := testutil.Poll(timeout, f)
	if err != nil && fatal {
		t.Fatalf("condition not met within %v: %v", timeout, err)
	}
	return err
}

// runCLI runs the binary with args and returns its stdout, stderr and exit code.
func runCLI(t testing.TB, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(dcounterBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = append(cleanEnv(), env...)
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatal(err)
		}
		code = ee.ExitCode()
	}
	return out.String(), errb.String(), code
}

func (p *proc) startWithEnv(env []string) {
	p.t.Helper()
	if p.log == nil {
		p.t.Cleanup(func() {
			p.kill()
			if p.t.Failed() {
				for i, l := range p.pastLogs {
					p.t.Logf("--- log of %s, run %d ---\n%s", p.name, i+1, l)
				}
				p.t.Logf("--- log of %s ---\n%s", p.name, p.log.String())
			}
		})
	} else {
		p.pastLogs = append(p.pastLogs, p.log.String())
	}
	p.log = &lockedBuffer{}
	p.done = make(chan struct{})
	if len(p.wrap) > 0 {
		p.cmd = exec.Command(p.wrap[0], append(append(p.wrap[1:len(p.wrap):len(p.wrap)], dcounterBin), p.args...)...)
	} else {
		p.cmd = exec.Command(dcounterBin, p.args...)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.cmd.Env = append(cleanEnv(), env...)
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	go func() {
		p.cmd.Wait()
		p.exitCode = p.cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	waitFor(p.t, 10*time.Second, func() error {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited with %d:\n%s", p.name, p.exitCode, p.log.String())
		default:
		}
		if _, err := p.get("/health"); err != nil {
			return err
		}
		if p.RESP != "" {
			c, err := net.DialTimeout("tcp", p.RESP, time.Second)
			if err != nil {
				return err
			}
			c.Close()
		}
		return nil
	}, true)
}

func itoa(i int) string { return fmt.Sprint(i) }

type errString string

func (e errString) Error() string { return string(e) }

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop(t testing.TB) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("%s did not stop within 15s of SIGTERM", p.name)
	}
	if p.exitCode != 0 {
		t.Fatalf("%s exited with %d after SIGTERM:\n%s", p.name, p.exitCode, p.log.String())
	}
}

// call sends one request to p's API and returns the status, the body and
// the response headers. A transport error (no answer) is err.
func (p *proc) call(ctx context.Context, method, path, body string, hdr http.Header) (int, []byte, http.Header, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.HTTP+path, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := p.httpClient().Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, b, resp.Header, err
	}
	return resp.StatusCode, b, resp.Header, nil
}

// counterAnswer is a counter as the API answers it.
type counterAnswer struct {
	Key   string `json:"key"`
	Value int64  `json:"value"`
	TTLMs int64  `json:"ttl_ms"`
}

// counter reads key's value and time left (TTLMs 0: no expiry).
func (p *proc) counter(key string) (counterAnswer, error) {
	var c counterAnswer
	b, err := p.get("/counters/" + url.PathEscape(key))
	if err != nil {
		return c, err
	}
	return c, json.Unmarshal(b, &c)
}

// listAll pages through GET /counters?prefix= with pages of limit and
// returns every item and the number of pages read.
func (p *proc) listAll(prefix string, limit int) ([]counterAnswer, int, error) {
	var all []counterAnswer
	q := url.Values{"prefix": {prefix}, "limit": {itoa(limit)}}
	for pages := 1; ; pages++ {
		b, err := p.get("/counters?" + q.Encode())
		if err != nil {
			return all, pages, err
		}
		var page struct {
			Items []counterAnswer `json:"items"`
			Next  string          `json:"next"`
		}
		if err := json.Unmarshal(b, &page); err != nil {
			return all, pages, err
		}
		all = append(all, page.Items...)
		if page.Next == "" {
			return all, pages, nil
		}
		if pages > 10_000 {
			return all, pages, fmt.Errorf("listing of %q does not end", prefix)
		}
		q.Set("cursor", page.Next)
	}
}
