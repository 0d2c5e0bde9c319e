package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	secRead  = "e2e-read-token-5f1c9a0b7d"
	secWrite = "e2e-write-token-8e2d4b6f1a"
	secAdmin = "e2e-admin-token-3c7a9e1d5b"
	secNew   = "e2e-added-token-0a9b8c7d6e"
	secKey   = "c2VjdXJpdHktZTJlLWNsdXN0ZXIta2V5LTMyYnl0ZXM="
)

// testPKI is a throwaway CA and the files of one certificate it issued for
// 127.0.0.1 (server and client use).
type testPKI struct {
	dir                   string
	caCert                *x509.Certificate
	caKey                 *ecdsa.PrivateKey
	CA, Cert, Key         string // file paths
	ClientCert, ClientKey string
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir()}
	p.caKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dcounter e2e CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &p.caKey.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	p.caCert, _ = x509.ParseCertificate(der)
	p.CA = filepath.Join(p.dir, "ca.crt")
	writePEM(t, p.CA, "CERTIFICATE", der)
	p.Cert, p.Key = filepath.Join(p.dir, "tls.crt"), filepath.Join(p.dir, "tls.key")
	p.issue(t, 100, p.Cert, p.Key)
	p.ClientCert, p.ClientKey = filepath.Join(p.dir, "client.crt"), filepath.Join(p.dir, "client.key")
	p.issue(t, 500, p.ClientCert, p.ClientKey)
	return p
}

// issue writes a certificate with serial (and its key) to certFile and
// keyFile, each replaced by a rename.
func (p *testPKI) issue(t *testing.T, serial int64, certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalPKCS8PrivateKey(key)
	writePEM(t, keyFile, "PRIVATE KEY", kb)
	writePEM(t, certFile, "CERTIFICATE", der)
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// httpsClient trusts only the test CA.
func (p *testPKI) httpsClient(t *testing.T) *http.Client {
	b, _ := os.ReadFile(p.CA)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// servedSerial is the serial number of the certificate addr serves now.
func (p *testPKI) servedSerial(addr string) (int64, error) {
	b, _ := os.ReadFile(p.CA)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64(), nil
}

func writeAuthFile(t *testing.T, path string, lines ...string) {
	t.Helper()
	if err := os.WriteFile(path, []byte("# e2e tokens\n"+strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// curlStatus runs curl against url and returns the status code and body.
func curlStatus(t *testing.T, args ...string) (int, string) {
	t.Helper()
	out, err := exec.Command("curl", append([]string{"-sS", "--max-time", "5", "-w", "\n%{http_code}"}, args...)...).CombinedOutput()
	s := strings.TrimSpace(string(out))
	i := strings.LastIndex(s, "\n")
	var code int
	fmt.Sscan(s[i+1:], &code)
	if err != nil && code == 0 {
		return 0, s
	}
	return code, strings.TrimSpace(s[:max(i, 0)])
}

// startSecureNode starts a node serving HTTPS with an auth file and the
// test cluster key.
func startSecureNode(t *testing.T, pki *testPKI, authFile string, extra ...string) *proc {
	p := &proc{
		t: t, name: "secure-node",
		Gossip: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		HTTP:   fmt.Sprintf("https://127.0.0.1:%d", freePort(t)),
		client: pki.httpsClient(t),
	}
	return p.startAsNode("", append([]string{"--auth-file", authFile, "--tls-cert", pki.Cert, "--tls-key", pki.Key, "--cluster-key", secKey}, extra...)...)
}

// TestAuthMatrixOverTLS drives the auth matrix against a node and through
// the gateway, over HTTPS with curl --cacert and with the CLI.
func TestAuthMatrixOverTLS(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("needs curl")
	}
	pki := newPKI(t)
	authFile := filepath.Join(t.TempDir(), "tokens")
	writeAuthFile(t, authFile, secRead+" read dash", secWrite+" write app", secAdmin+" admin ops")
	node := startSecureNode(t, pki, authFile)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	gw := &proc{t: t, name: "gateway", HTTP: "https://" + addr, client: pki.httpsClient(t),
		args: []string{"gateway", "--http-addr", addr, "--nodes", node.HTTP, "--log-level", "debug",
			"--auth-file", authFile, "--tls-cert", pki.Cert, "--tls-key", pki.Key, "--tls-ca", pki.CA, "--cluster-key", secKey}}
	gw.start()
	waitFor(t, 10*time.Second, func() error {
		code, body := curlStatus(t, "--cacert", pki.CA, "-H", "Authorization: Bearer "+secAdmin, gw.HTTP+"/nodes")
		if code != 200 || !strings.Contains(body, `"status":"healthy"`) || !strings.Contains(body, `"name":"secure-node"`) {
			return fmt.Errorf("gateway /nodes: %d %s", code, body)
		}
		return nil
	}, true)

	for _, target := range []*proc{node, gw} {
		t.Run(target.name, func(t *testing.T) {
			for _, c := range []struct {
				name, method, path, token string
				want                      int
			}{
				{"no token", "GET", "/counter", "", 401},
				{"wrong token", "GET", "/counter", "wrong-token-0123456789", 401},
				{"no token writing", "POST", "/increment", "", 401},
				{"read token reading", "GET", "/counters/m", secRead, 200},
				{"read token writing", "POST", "/counters/m/increment", secRead, 403},
				{"write token writing", "POST", "/counters/m/increment", secWrite, 200},
				{"write token on /nodes", "GET", "/nodes", secWrite, 403},
				{"write token on /metrics", "GET", "/metrics", secWrite, 403},
				{"admin on /nodes", "GET", "/nodes", secAdmin, 200},
				{"admin on /metrics", "GET", "/metrics", secAdmin, 200},
				{"admin writing", "POST", "/counters/m/decrement", secAdmin, 200},
			} {
				args := []string{"--cacert", pki.CA, "-X", c.method, target.HTTP + c.path}
				if c.token != "" {
					args = append(args, "-H", "Authorization: Bearer "+c.token)
				}
				code, body := curlStatus(t, args...)
				if code != c.want {
					t.Errorf("%s: %s %s = %d %s, want %d", c.name, c.method, c.path, code, body, c.want)
				}
				if code == 401 && !strings.Contains(body, `"error":`) {
					t.Errorf("%s: 401 body %q is not a JSON error", c.name, body)
				}
			}
			// /health is open and shows a stranger only the status.
			code, body := curlStatus(t, "--cacert", pki.CA, target.HTTP+"/health")
			if code != 200 || body != `{"status":"ok"}` {
				t.Errorf("anonymous /health = %d %s", code, body)
			}
			// A client cannot claim an identity with the gateway's headers.
			code, body = curlStatus(t, "--cacert", pki.CA, "-X", "POST", target.HTTP+"/counters/m/increment",
				"-H", "Dcounter-Identity-Role: admin", "-H", "Dcounter-Identity-Name: x",
				"-H", "Dcounter-Identity-Key: 0011223344556677", "-H", "Dcounter-Identity-Mac: AAAA")
			if code != 401 {
				t.Errorf("forged identity headers = %d %s, want 401", code, body)
			}
			// Without the CA, or in plain HTTP, nothing gets through.
			if code, body := curlStatus(t, target.HTTP+"/health"); code != 0 {
				t.Errorf("curl without --cacert = %d %s, want a verification failure", code, body)
			}
			if code, _ := curlStatus(t, "http://"+hostPort(target.HTTP)+"/health"); code == 200 {
				t.Errorf("plain HTTP to the TLS port answered 200")
			}

			// The CLI: --ca, DCOUNTER_TOKEN and --token.
			out, errOut, exit := runCLI(t, []string{"DCOUNTER_TOKEN=" + secWrite}, "inc", "cli", "--by", "5", "--addr", target.HTTP, "--ca", pki.CA)
			if exit != 0 || strings.TrimSpace(out) == "" {
				t.Errorf("CLI inc with a write token: exit %d, %s %s", exit, out, errOut)
			}
			_, errOut, exit = runCLI(t, []string{"DCOUNTER_CA=" + pki.CA}, "inc", "cli", "--addr", target.HTTP, "--token", secRead)
			if exit != 1 || !strings.Contains(errOut, "403") {
				t.Errorf("CLI inc with a read token: exit %d, %s", exit, errOut)
			}
			_, errOut, exit = runCLI(t, nil, "get", "cli", "--addr", target.HTTP, "--ca", pki.CA)
			if exit != 1 || !strings.Contains(errOut, "401") {
				t.Errorf("CLI get without a token: exit %d, %s", exit, errOut)
			}
			out, errOut, exit = runCLI(t, []string{"DCOUNTER_TOKEN=" + secAdmin, "DCOUNTER_CA=" + pki.CA}, "nodes", "--addr", target.HTTP)
			if exit != 0 || !strings.Contains(out, "secure-node") {
				t.Errorf("CLI nodes with an admin token: exit %d, %s %s", exit, out, errOut)
			}
			if _, errOut, exit := runCLI(t, nil, "health", target.HTTP, "--ca", pki.CA); exit != 0 {
				t.Errorf("CLI health: exit %d %s", exit, errOut)
			}
		})
	}
	// Every acknowledged write reached the node: 2 x (+1 -1 +5).
	if v, err := node.value("m"); err == nil {
		t.Errorf("node answered an unauthenticated read: %d", v)
	}
	code, body := curlStatus(t, "--cacert", pki.CA, "-H", "Authorization: Bearer "+secRead, node.HTTP+"/counters/cli")
	if code != 200 || body != `{"key":"cli","value":10}` {
		t.Errorf("node's value of cli = %d %s, want 10", code, body)
	}
	code, body = curlStatus(t, "--cacert", pki.CA, "-H", "Authorization: Bearer "+secRead, node.HTTP+"/counters/m")
	if code != 200 || body != `{"key":"m","value":0}` {
		t.Errorf("node's value of m = %d %s, want 0", code, body)
	}
	if strings.Contains(node.log.String(), secWrite) || strings.Contains(gw.log.String(), secWrite) {
		t.Error("a token appears in a log")
	}
}

// TestReloadTokensAndCertificate: SIGHUP reloads the auth file (a broken
// one keeps the tokens in force); replaced certificate files are served to
// new connections without a signal.
func TestReloadTokensAndCertificate(t *testing.T) {
	pki := newPKI(t)
	authFile := filepath.Join(t.TempDir(), "tokens")
	writeAuthFile(t, authFile, secWrite+" write app")
	node := startSecureNode(t, pki, authFile)
	status := func(token string) int {
		code, _ := curlStatus(t, "--cacert", pki.CA, "-H", "Authorization: Bearer "+token, node.HTTP+"/counter")
		return code
	}
	if status(secWrite) != 200 || status(secNew) != 401 {
		t.Fatal("initial tokens wrong")
	}
	writeAuthFile(t, authFile, secNew+" read added")
	node.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 5*time.Second, func() error {
		if s := status(secNew); s != 200 {
			return fmt.Errorf("new token: %d", s)
		}
		return nil
	}, true)
	if status(secWrite) != 401 {
		t.Fatal("a removed token still works after reload")
	}
	writeAuthFile(t, authFile, "short read")
	node.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 5*time.Second, func() error {
		if !strings.Contains(node.log.String(), "auth file not reloaded") {
			return fmt.Errorf("no reload error logged")
		}
		return nil
	}, true)
	if status(secNew) != 200 {
		t.Fatal("a bad auth file on reload dropped the tokens in force")
	}
	if node.exitCode != 0 || !strings.Contains(node.log.String(), "line 2: token too short") {
		t.Fatalf("reload error does not name the line:\n%s", node.log.String())
	}

	// Certificate rotation: new files, new connections, same process.
	addr := hostPort(node.HTTP)
	if s, err := pki.servedSerial(addr); err != nil || s != 100 {
		t.Fatalf("first certificate: %d %v", s, err)
	}
	pki.issue(t, 200, pki.Cert, pki.Key)
	waitFor(t, 5*time.Second, func() error {
		s, err := pki.servedSerial(addr)
		if err == nil && s != 200 {
			err = fmt.Errorf("serving serial %d", s)
		}
		return err
	}, true)
	if status(secNew) != 200 {
		t.Fatal("API broken after the certificate changed")
	}
}

// TestMutualTLSGatewayToNode: a node requiring client certificates refuses
// clients without one; the gateway proves itself with its own certificate.
func TestMutualTLSGatewayToNode(t *testing.T) {
	pki := newPKI(t)
	authFile := filepath.Join(t.TempDir(), "tokens")
	writeAuthFile(t, authFile, secWrite+" write app")
	node := &proc{
		t: t, name: "mtls-node",
		Gossip: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		HTTP:   fmt.Sprintf("https://127.0.0.1:%d", freePort(t)),
	}
	cl := pki.httpsClient(t)
	pair, err := tls.LoadX509KeyPair(pki.ClientCert, pki.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	cl.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{pair}
	node.client = cl
	node.startAsNode("", "--auth-file", authFile, "--tls-cert", pki.Cert, "--tls-key", pki.Key, "--tls-client-ca", pki.CA, "--cluster-key", secKey)

	if code, _ := curlStatus(t, "--cacert", pki.CA, node.HTTP+"/health"); code == 200 {
		t.Fatal("a client without a certificate got through")
	}
	if code, body := curlStatus(t, "--cacert", pki.CA, "--cert", pki.ClientCert, "--key", pki.ClientKey,
		"-H", "Authorization: Bearer "+secWrite, "-X", "POST", node.HTTP+"/increment"); code != 200 {
		t.Fatalf("a client with a certificate and a token: %d %s", code, body)
	}
	if _, errOut, code := runCLI(t, nil, "health", node.HTTP, "--ca", pki.CA); code != 1 {
		t.Fatalf("CLI health without a client certificate: exit %d %s", code, errOut)
	}
	if out, errOut, code := runCLI(t, []string{"DCOUNTER_TOKEN=" + secWrite}, "get", "--addr", node.HTTP, "--ca", pki.CA,
		"--client-cert", pki.ClientCert, "--client-key", pki.ClientKey); code != 0 || strings.TrimSpace(out) != "1" {
		t.Fatalf("CLI get with a client certificate: exit %d %s %s", code, out, errOut)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	gw := &proc{t: t, name: "gateway", HTTP: "http://" + addr,
		args: []string{"gateway", "--http-addr", addr, "--nodes", node.HTTP, "--log-level", "debug",
			"--auth-file", authFile, "--tls-cert", pki.Cert, "--tls-key", pki.Key, "--tls-ca", pki.CA, "--cluster-key", secKey}}
	gw.HTTP = "https://" + addr
	gw.client = pki.httpsClient(t)
	gw.start()
	waitFor(t, 10*time.Second, func() error {
		code, body := curlStatus(t, "--cacert", pki.CA, "-H", "Authorization: Bearer "+secWrite, "-X", "POST", gw.HTTP+"/increment")
		if code != 200 || !strings.Contains(body, `"value":2`) {
			return fmt.Errorf("write through the gateway: %d %s", code, body)
		}
		return nil
	}, true)
}

// TestOpenAPIRefusedOffLoopback: without an auth file, node and gateway
// refuse a client API address other machines can reach, unless
// --insecure-api.
func TestOpenAPIRefusedOffLoopback(t *testing.T) {
	// Distinct ports taken together: a port just released by freePort is
	// often the next one handed out, and gossip and API must differ.
	ports := distinctFreePorts(t, 5)
	port := ports[0]
	_, errOut, code := runCLI(t, nil, "node", "--in-memory", "--gossip-addr", fmt.Sprintf("127.0.0.1:%d", ports[1]),
		"--http-addr", fmt.Sprintf("0.0.0.0:%d", port))
	if code != 2 || !strings.Contains(errOut, "--auth-file") || !strings.Contains(errOut, "--insecure-api") {
		t.Fatalf("node on 0.0.0.0 without auth: exit %d\n%s", code, errOut)
	}
	// (--insecure waives the separate cluster-key check, tested elsewhere.)
	_, errOut, code = runCLI(t, nil, "gateway", "--nodes", "http://127.0.0.1:1", "--insecure", "--http-addr", fmt.Sprintf("0.0.0.0:%d", port))
	if code != 2 || !strings.Contains(errOut, "--auth-file") {
		t.Fatalf("gateway on 0.0.0.0 without auth: exit %d\n%s", code, errOut)
	}
	// --insecure-api lets it run; the wildcard is reached on 127.0.0.1.
	p := &proc{t: t, name: "open", Gossip: fmt.Sprintf("127.0.0.1:%d", ports[2]), HTTP: fmt.Sprintf("http://127.0.0.1:%d", port)}
	p.args = []string{"node", "--name", "open", "--in-memory", "--gossip-addr", p.Gossip, "--http-addr", fmt.Sprintf("0.0.0.0:%d", port),
		"--advertise-http-addr", hostPort(p.HTTP), "--insecure-api"}
	p.start()
	// An auth file makes it fine too.
	authFile := filepath.Join(t.TempDir(), "tokens")
	writeAuthFile(t, authFile, secRead+" read")
	q := &proc{t: t, name: "authed", Gossip: fmt.Sprintf("127.0.0.1:%d", ports[3])}
	qport := ports[4]
	q.HTTP = fmt.Sprintf("http://127.0.0.1:%d", qport)
	q.args = []string{"node", "--name", "authed", "--in-memory", "--gossip-addr", q.Gossip, "--http-addr", fmt.Sprintf("0.0.0.0:%d", qport),
		"--auth-file", authFile}
	q.start()
	// A startup error in the auth file names the line.
	writeAuthFile(t, authFile, secRead+" read", secWrite+" sudo")
	_, errOut, code = runCLI(t, nil, "node", "--in-memory", "--gossip-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "--auth-file", authFile)
	if code != 2 || !strings.Contains(errOut, "line 3: unknown role \"sudo\"") || strings.Contains(errOut, secWrite) {
		t.Fatalf("bad auth file: exit %d\n%s", code, errOut)
	}
}

// TestOpenAPIRefusedOnAHostAddress repeats the refusal on a real
// non-loopback address inside a network namespace.
func TestOpenAPIRefusedOnAHostAddress(t *testing.T) {
	lab := newNetlab(t, 1)
	args := []string{"netns", "exec", lab.ns[0], dcounterBin, "node", "--in-memory", "--cluster-key", labKey,
		"--gossip-addr", lab.ips[0] + ":7946", "--http-addr", lab.ips[0] + ":8080"}
	out, err := exec.Command("ip", args...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "--insecure-api") {
		t.Fatalf("node on %s without auth: %v\n%s", lab.ips[0], err, out)
	}
	p := lab.node(0, "") // the lab passes --insecure-api
	if _, err := p.get("/health"); err != nil {
		t.Fatal(err)
	}
}

// TestRunClusterScriptSecure: run-cluster.sh and monitor.sh with HTTPS,
// tokens and a cluster key, all from the environment.
func TestRunClusterScriptSecure(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("needs curl")
	}
	pki := newPKI(t)
	authFile := filepath.Join(t.TempDir(), "tokens")
	writeAuthFile(t, authFile, secAdmin+" admin ops")
	base, sh, must := scriptRunner(t, cleanEnv(),
		"DCOUNTER_TLS_CERT="+pki.Cert, "DCOUNTER_TLS_KEY="+pki.Key, "DCOUNTER_TLS_CA="+pki.CA, "DCOUNTER_CA="+pki.CA,
		"DCOUNTER_AUTH_FILE="+authFile, "DCOUNTER_TOKEN="+secAdmin, "DCOUNTER_CLUSTER_KEY="+secKey)
	if out := must("run-cluster.sh", "start", "2"); !strings.Contains(out, fmt.Sprintf("https://127.0.0.1:%d", base+11)) {
		t.Fatalf("start did not print https URLs:\n%s", out)
	}
	must("run-cluster.sh", "inc")
	must("run-cluster.sh", "inc", "1")
	waitFor(t, 5*time.Second, func() error {
		out, err := sh("run-cluster.sh", "consistency")
		if err != nil || !strings.Contains(out, "every node reports 2") {
			return fmt.Errorf("consistency: %v\n%s", err, out)
		}
		return nil
	}, true)
	if out := must("run-cluster.sh", "status"); strings.Count(out, " ok ") != 4 {
		t.Fatalf("status (want discovery, 2 nodes and the gateway ok):\n%s", out)
	}
	// MEMBERS comes from /health details, which need the token.
	if out := must("monitor.sh", "--once"); !strings.Contains(out, "cluster: converged") || !strings.Contains(out, "1+1") {
		t.Fatalf("monitor.sh --once:\n%s", out)
	}
	must("run-cluster.sh", "stop")
}

// distinctFreePorts returns n different ports that were free, all held at
// once while choosing so that none is handed out twice.
func distinctFreePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}
