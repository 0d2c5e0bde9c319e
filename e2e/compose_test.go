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
// acknowledged total.
func TestComposeCluster(t *testing.T) {
	compose := composeCmd(t)
	run(t, nil, "make", "image")
	project := fmt.Sprintf("dce2e%d", rand.IntN(1_000_000))
	port := freePort(t)
	env := []string{fmt.Sprintf("DCOUNTER_GATEWAY_PORT=%d", port), "COMPOSE_PROJECT_NAME=" + project}
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
	token := strings.TrimSpace(c("run", "--rm", "-T", "secrets", "secrets", "token", "/secrets", "admin"))
	if len(token) < 40 {
		t.Fatalf("token from the secrets volume: %q", token)
	}
	authed := &http.Client{Timeout: client.Timeout, Transport: bearer{token, http.DefaultTransport}}
	gw := &proc{t: t, name: "gateway", HTTP: fmt.Sprintf("http://127.0.0.1:%d", port), client: authed}
	if code := post(t, gw.HTTP+"/increment", nil); code != http.StatusUnauthorized {
		t.Fatalf("write without a token through the published port = %d, want 401", code)
	}
	nodeValues := func() (map[string]int64, error) {
		b, err := gw.get("/nodes")
		if err != nil {
			return nil, err
		}
		var ns []struct {
			Name, Status string
			Value        *int64
		}
		if err := json.Unmarshal(b, &ns); err != nil {
			return nil, err
		}
		out := map[string]int64{}
		for _, n := range ns {
			if n.Status == "healthy" && n.Value != nil {
				out[n.Name] = *n.Value
			}
		}
		return out, nil
	}
	waitFor(t, 90*time.Second, func() error {
		vs, err := nodeValues()
		if err == nil && len(vs) != 5 {
			err = fmt.Errorf("gateway sees %d healthy nodes", len(vs))
		}
		return err
	}, true)

	l := newLedger()
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
	time.Sleep(2 * time.Second)
	run(t, nil, "docker", "start", victim)
	time.Sleep(2 * time.Second)
	cancel()
	wg.Wait()

	var last map[string]int64
	waitFor(t, 60*time.Second, func() error {
		vs, err := nodeValues()
		if err != nil {
			return err
		}
		last = vs
		if len(vs) != 5 {
			return fmt.Errorf("%d healthy nodes: %v", len(vs), vs)
		}
		for name, v := range vs {
			if v != vs["node1"] {
				return fmt.Errorf("not converged: %s=%d node1=%d", name, v, vs["node1"])
			}
		}
		return nil
	}, true)
	l.mu.Lock()
	acked, doubt := l.acked["default"], l.inDoubt["default"]
	l.mu.Unlock()
	t.Logf("through the gateway: %d acknowledged, %d failed or unknown; all 5 nodes report %d", acked, doubt, last["node1"])
	l.check(t, map[string]int64{"default": last["node1"]})
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
