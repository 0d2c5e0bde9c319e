package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// composeCmd returns how to run Compose here ("docker compose" or
// "docker-compose"), or skips the test when no Docker engine runs.
func composeCmd(t *testing.T) []string {
	t.Helper()
	if err := exec.Command("docker", "info").Run(); err != nil {
		t.Skip("no Docker engine: skipping the container end-to-end test (docker info failed)")
	}
	if exec.Command("docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	if _, err := exec.LookPath("docker-compose"); err == nil {
		return []string{"docker-compose"}
	}
	t.Skip("no Docker Compose: skipping the container end-to-end test")
	return nil
}

func run(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestComposeCluster runs docker-compose.yml as users do — built image,
// 1 discovery server, 5 nodes with volumes, 1 gateway — writes through the
// published gateway port, SIGKILLs a node container in the middle of the
// writes, restarts it, and checks that all five nodes converge on the
// acknowledged total. It does so twice: once with the node back before its
// peers declare it dead, once after.
func TestComposeCluster(t *testing.T) {
	compose := composeCmd(t)
	run(t, nil, "make", "image")
	project := fmt.Sprintf("dce2e%d", rand.IntN(1_000_000))
	port := freePort(t)
	respPort := freePort(t)
	env := []string{fmt.Sprintf("DCOUNTER_GATEWAY_PORT=%d", port), fmt.Sprintf("DCOUNTER_RESP_PORT=%d", respPort), "COMPOSE_PROJECT_NAME=" + project}
	c := func(args ...string) string { return run(t, env, append(compose, args...)...) }
	t.Cleanup(func() {
		if t.Failed() {
			cmd := exec.Command(compose[0], append(compose[1:], "logs", "--no-color", "--tail", "40")...)
			cmd.Dir, cmd.Env = "..", append(os.Environ(), env...)
			out, _ := cmd.CombinedOutput()
			t.Logf("compose logs:\n%s", out)
		}
		cmd := exec.Command(compose[0], append(compose[1:], "down", "-v", "--remove-orphans")...)
		cmd.Dir, cmd.Env = "..", append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Logf("compose down: %v\n%s", err, out)
		}
	})
	c("up", "-d")
	// Secure by default: the gateway wants a token, made by the secrets
	// service; fetch it the way the README tells users to.
	// Compose reports on stderr what it creates; the token is stdout's one line.
	tokCmd := exec.Command(compose[0], append(compose[1:], "run", "--rm", "-T", "secrets", "secrets", "token", "/secrets", "admin")...)
	tokCmd.Dir, tokCmd.Env = "..", append(os.Environ(), env...)
	tokOut, err := tokCmd.Output()
	if err != nil {
		t.Fatalf("reading the admin token: %v", err)
	}
	token := strings.TrimSpace(string(tokOut))
	if len(token) < 40 {
		t.Fatalf("token from the secrets volume: %q", token)
	}
	authed := &http.Client{Timeout: client.Timeout, Transport: bearer{token, http.DefaultTransport}}
	gw := &proc{t: t, name: "gateway", HTTP: fmt.Sprintf("http://127.0.0.1:%d", port), client: authed}
	if code := post(t, gw.HTTP+"/increment", nil); code != http.StatusUnauthorized {
		t.Fatalf("write without a token through the published port = %d, want 401", code)
	}
	nodes := func() ([]gatewayNode, error) {
		b, err := gw.get("/nodes")
		if err != nil {
			return nil, err
		}
		var ns []gatewayNode
		err = json.Unmarshal(b, &ns)
		return ns, err
	}
	waitFor(t, 90*time.Second, func() error {
		ns, err := nodes()
		healthy := 0
		for _, n := range ns {
			if n.Status == "healthy" && n.Value != nil {
				healthy++
			}
		}
		if err == nil && healthy != 5 {
			err = fmt.Errorf("gateway sees %d healthy nodes", healthy)
		}
		return err
	}, true)

	// node1's Redis-protocol port is published too, and wants the token.
	rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", respPort), MaxRetries: -1})
	defer rdb.Close()
	if err := rdb.Incr(context.Background(), "compose:resp").Err(); err == nil || !strings.HasPrefix(err.Error(), "NOAUTH") {
		t.Fatalf("INCR without AUTH through the published Redis port: %v, want NOAUTH", err)
	}
	rdbAuthed := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", respPort), Password: token, MaxRetries: -1})
	defer rdbAuthed.Close()
	if n, err := rdbAuthed.IncrBy(context.Background(), "compose:resp", 5).Result(); err != nil || n != 5 {
		t.Fatalf("INCRBY with the token through the published Redis port: %d, %v", n, err)
	}

	l := newLedger()
	// DeadAfter is 3s: the first outage ends before the peers declare the
	// node dead, the second after.
	for _, down := range []time.Duration{time.Second, 4 * time.Second} {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for w := 0; w < 16; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					req, _ := http.NewRequest(http.MethodPost, gw.HTTP+"/increment", nil)
					resp, err := authed.Do(req)
					if err == nil {
						resp.Body.Close()
						if resp.StatusCode != 200 {
							err = fmt.Errorf("%s", resp.Status)
						}
					}
					l.record("default", 1, err)
				}
			}()
		}
		time.Sleep(2 * time.Second)
		victim := strings.TrimSpace(c("ps", "-q", "node3"))
		run(t, nil, "docker", "kill", victim)
		time.Sleep(down)
		run(t, nil, "docker", "start", victim)
		time.Sleep(2 * time.Second)
		cancel()
		wg.Wait()

		vs, err := convergedValues(t, nodes, 5, 60*time.Second)
		if err != nil {
			t.Fatalf("node down %v: %v", down, err)
		}
		l.mu.Lock()
		acked, doubt := l.acked["default"], l.inDoubt["default"]
		l.mu.Unlock()
		t.Logf("node down %v: through the gateway: %d acknowledged, %d failed or unknown; all 5 nodes report %d", down, acked, doubt, vs["node1"])
		l.check(t, map[string]int64{"default": vs["node1"]})
	}
}

// gatewayNode is one entry of the gateway's GET /nodes.
type gatewayNode struct {
	Name, Status string
	Value        *int64
	LastCheck    string `json:"last_check"`
}

// freshValues reads node values out of successive GET /nodes answers and
// keeps only those the gateway read after the first answer it was given.
//
// /nodes serves what the gateway's last health check saw, up to a check
// interval old. Asked right after a burst of writes, it can show every
// node at the same value, read while the last writes were still landing: a
// state that looks converged but lacks writes already acknowledged. The
// gateway checks its nodes a round at a time, stamping last_check as each
// check ends; a check stamped after the first answer may have read before
// it, but the next round began after that check ended. So a node's value
// counts once its last_check has changed twice since the first answer.
type freshValues struct {
	first map[string]string   // node name → last_check in the first answer
	later map[string][]string // node name → the distinct last_checks since
}

// observe takes the next answer and returns the values of the healthy
// nodes read after the first answer.
func (f *freshValues) observe(ns []gatewayNode) map[string]int64 {
	fresh := map[string]int64{}
	if f.first == nil {
		f.first, f.later = map[string]string{}, map[string][]string{}
		for _, n := range ns {
			f.first[n.Name] = n.LastCheck
		}
		return fresh
	}
	for _, n := range ns {
		seen := f.later[n.Name]
		if n.LastCheck != f.first[n.Name] && (len(seen) == 0 || seen[len(seen)-1] != n.LastCheck) {
			seen = append(seen, n.LastCheck)
			f.later[n.Name] = seen
		}
		if len(seen) >= 2 && n.Status == "healthy" && n.Value != nil {
			fresh[n.Name] = *n.Value
		}
	}
	return fresh
}

// convergedValues polls nodes (the gateway's GET /nodes) until want nodes
// report the same value, counting only values read after the first poll
// (see freshValues), and returns them. Call it once the writes have
// stopped.
func convergedValues(t testing.TB, nodes func() ([]gatewayNode, error), want int, timeout time.Duration) (map[string]int64, error) {
	t.Helper()
	var (
		f    freshValues
		last map[string]int64
	)
	err := waitFor(t, timeout, func() error {
		ns, err := nodes()
		if err != nil {
			return err
		}
		last = f.observe(ns)
		if len(last) != want {
			return fmt.Errorf("%d of %d nodes healthy and checked since the writes stopped: %v", len(last), want, last)
		}
		for name, v := range last {
			for other, w := range last {
				if v != w {
					return fmt.Errorf("not converged: %s=%d %s=%d", name, v, other, w)
				}
			}
		}
		return nil
	}, false)
	return last, err
}

// bearer adds a bearer token to every request.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// post sends an empty POST with the shared client and returns the status.
func post(t *testing.T, url string, hdr http.Header) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, nil)
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
