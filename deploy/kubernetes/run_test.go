package kubernetes_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/dcounter/dcounter/internal/testutil"
)

// freePort returns a port that was free a moment ago.
func freePort(t testing.TB) int { return testutil.FreePort(t) }

// podRun is how one container of the manifests is run here: its args and
// environment as the kubelet would pass them, with only what a machine
// without Kubernetes cannot give changed.
type podRun struct {
	podIP   string
	ports   map[int32]int   // container port → free port here
	dropArg map[string]bool // flags left out (with their values)
	setArg  map[string]string
	paths   map[string]string // mount path → directory here
}

// command builds the container's command line and environment.
func (r podRun) command(t *testing.T, c *container) *exec.Cmd {
	t.Helper()
	env := map[string]string{"POD_NAME": downwardExample["metadata.name"], "POD_IP": r.podIP}
	var envList []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "DCOUNTER_") {
			envList = append(envList, e)
		}
	}
	remap := func(v string) string {
		if h, p, err := net.SplitHostPort(v); err == nil {
			for from, to := range r.ports {
				if p == fmt.Sprint(from) {
					return net.JoinHostPort(h, fmt.Sprint(to))
				}
			}
		}
		for from, to := range r.paths {
			if rel, err := filepath.Rel(from, v); err == nil && !strings.HasPrefix(rel, "..") {
				return filepath.Join(to, rel)
			}
		}
		return v
	}
	for _, e := range c.c.Env {
		if e.ValueFrom != nil {
			continue // the downward API: set above
		}
		v := expand(e.Value, env)
		env[e.Name] = v
		envList = append(envList, e.Name+"="+remap(v))
	}
	args := []string{c.cmd}
	for i := 1; i < len(c.c.Args); i++ {
		name, val, inline := strings.Cut(strings.TrimPrefix(c.c.Args[i], "--"), "=")
		hasVal := inline || c.help[name].takesValue
		if hasVal && !inline {
			i++
			val = c.c.Args[i]
		}
		val = expand(val, env)
		switch {
		case r.dropArg[name]:
			continue
		case r.setArg[name] != "":
			val = r.setArg[name]
		case hasVal:
			val = remap(val)
		}
		args = append(args, "--"+name)
		if hasVal {
			args = append(args, val)
		}
	}
	cmd := exec.Command(dcounterBin, args...)
	cmd.Env = envList
	return cmd
}

// start runs cmd, logging its output to t on failure, and stops it with
// SIGKILL at the end of the test if it still runs.
func start(t *testing.T, name string, cmd *exec.Cmd) (wait func() error) {
	t.Helper()
	var (
		mu  sync.Mutex
		out bytes.Buffer
	)
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(p) })
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var once sync.Once
	var err error
	wait = func() error { once.Do(func() { err = <-done }); return err }
	t.Cleanup(func() {
		cmd.Process.Kill()
		wait()
		if t.Failed() {
			mu.Lock()
			t.Logf("%s %s:\n%s", name, strings.Join(cmd.Args[1:], " "), out.String())
			mu.Unlock()
		}
	})
	return wait
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// status GETs url with an optional token and returns the status and body.
func status(url, token string) (int, string) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return 0, err.Error()
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestManifestArgsStartAServingNodeAndGateway runs the node and the
// gateway with the manifests' own args and environment — the Secret's
// files from `dcounter secrets init`, the pod IP 127.0.0.1, free ports
// for the container ports — and checks what a cluster would: the
// probes' route answers an anonymous caller 200, the Secret's tokens
// work, the gateway proves the node with the Secret's key and serves
// through it, and SIGTERM stops the node cleanly (exit 0) well inside
// the grace period. Left out: --join (DNS join is tested where it is
// built) and the gateway's --nodes names, which only cluster DNS resolves.
func TestManifestArgsStartAServingNodeAndGateway(t *testing.T) {
	m := load(t)
	node, gw := nodeAndGateway(t, m)
	secrets := filepath.Join(t.TempDir(), "secrets")
	if out, err := exec.Command(dcounterBin, "secrets", "init", secrets).CombinedOutput(); err != nil {
		t.Fatalf("dcounter secrets init: %v\n%s", err, out)
	}
	tok := func(role string) string {
		out, err := exec.Command(dcounterBin, "secrets", "token", secrets, role).Output()
		if err != nil {
			t.Fatalf("dcounter secrets token %s: %v", role, err)
		}
		return strings.TrimSpace(string(out))
	}
	mounts := func(c *container) map[string]string {
		paths := map[string]string{}
		for _, vm := range c.c.VolumeMounts {
			for _, v := range c.w.pod.Spec.Volumes {
				if v.Name == vm.Name && v.Secret != nil {
					paths[vm.MountPath] = secrets
				}
			}
		}
		return paths
	}
	ports := func(c *container) map[int32]int {
		p := map[int32]int{}
		for _, cp := range c.c.Ports {
			p[cp.ContainerPort] = freePort(t)
		}
		return p
	}
	portOf := func(c *container, name string) corev1.ContainerPort {
		for _, cp := range c.c.Ports {
			if cp.Name == name {
				return cp
			}
		}
		t.Fatalf("%s: no port %s", c.id, name)
		return corev1.ContainerPort{}
	}

	nodeRun := podRun{podIP: "127.0.0.1", ports: ports(node), paths: mounts(node),
		dropArg: map[string]bool{"join": true}, setArg: map[string]string{"data-dir": t.TempDir()}}
	nodeCmd := nodeRun.command(t, node)
	waitNode := start(t, "node", nodeCmd)
	nodeHTTP := nodeRun.ports[portOf(node, "http").ContainerPort]
	probe := node.c.ReadinessProbe.HTTPGet.Path
	testutil.WaitFor(t, "the node's readiness probe", func() bool {
		code, _ := status(fmt.Sprintf("http://127.0.0.1:%d%s", nodeHTTP, probe), "")
		return code == http.StatusOK
	})
	if code, body := status(fmt.Sprintf("http://127.0.0.1:%d/counter", nodeHTTP), ""); code != http.StatusUnauthorized {
		t.Errorf("node GET /counter without a token: %d %s, want 401", code, body)
	}
	if code, body := status(fmt.Sprintf("http://127.0.0.1:%d/counter", nodeHTTP), tok("read")); code != http.StatusOK {
		t.Errorf("node GET /counter with the Secret's read token: %d %s", code, body)
	}

	gwRun := podRun{podIP: "127.0.0.1", ports: ports(gw), paths: mounts(gw),
		setArg: map[string]string{"nodes": fmt.Sprintf("http://127.0.0.1:%d", nodeHTTP)}}
	start(t, "gateway", gwRun.command(t, gw))
	gwHTTP := gwRun.ports[portOf(gw, "http").ContainerPort]
	// Ready means at least one node proved, with the Secret's key, that
	// it is a member of the gateway's --cluster.
	testutil.WaitFor(t, "the gateway's readiness probe", func() bool {
		code, _ := status(fmt.Sprintf("http://127.0.0.1:%d%s", gwHTTP, gw.c.ReadinessProbe.HTTPGet.Path), "")
		return code == http.StatusOK
	})
	req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/increment", gwHTTP), nil)
	req.Header.Set("Authorization", "Bearer "+tok("write"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var got struct{ Value int64 }
	err = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || got.Value != 1 {
		t.Fatalf("POST /increment through the gateway: %d %+v %v", resp.StatusCode, got, err)
	}

	// A rollout's stop: SIGTERM, then the grace period less the preStop
	// pause before the kubelet would SIGKILL. The bound is a failure
	// deadline for a hang, not a measurement.
	grace := time.Duration(*node.w.pod.Spec.TerminationGracePeriodSeconds) * time.Second
	if l := node.c.Lifecycle; l != nil && l.PreStop != nil && l.PreStop.Sleep != nil {
		grace -= time.Duration(l.PreStop.Sleep.Seconds) * time.Second
	}
	if err := nodeCmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- waitNode() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("node after SIGTERM: %v, want exit 0 (a clean stop)", err)
		}
	case <-time.After(grace):
		t.Errorf("node still running %v after SIGTERM: the kubelet would SIGKILL it", grace)
	}
}
