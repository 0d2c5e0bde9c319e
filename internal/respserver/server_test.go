package respserver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/auth"
	"github.com/dcounter/dcounter/internal/resp"
	"github.com/dcounter/dcounter/internal/testutil"
)

func TestPipelineGroupsWrites(t *testing.T) {
	f := newFake()
	f.set("r", 100, 0)
	_, addr := startServer(t, Config{Service: f})
	c := dial(t, addr)
	f.callLog()
	// One write: three writes, a read, two writes, an error, a write, a read.
	c.send(enc("INCR", "a") + enc("INCRBY", "a", "5") + enc("DEL", "r", "zz") +
		enc("GET", "a") +
		enc("DECR", "b") + enc("EXPIRE", "a", "100") +
		enc("INCRBY", "a", "x") +
		enc("GETDEL", "a") +
		enc("TTL", "a"))
	want := []string{":1\r\n", ":6\r\n", ":1\r\n", bulk("6"), ":-1\r\n", ":1\r\n", "-ERR value is not an integer or out of range\r\n", bulk("6"), ":-2\r\n"}
	for i, w := range want {
		if got := c.reply(); got != w {
			t.Errorf("reply %d: got %q want %q", i, got, w)
		}
	}
	wantCalls := []string{"writes 4", "get a", "writes 2", "record inc 1", "writes 1", "get a"}
	if got := f.callLog(); !slices.Equal(got, wantCalls) {
		t.Errorf("calls:\n got %q\nwant %q", got, wantCalls)
	}
}

func TestPipelineGroupCap(t *testing.T) {
	f := newFake()
	_, addr := startServer(t, Config{Service: f})
	c := dial(t, addr)
	const n = groupCap + 10
	var b strings.Builder
	for range n {
		b.WriteString(enc("INCR", "k"))
	}
	b.WriteString(enc("GET", "k"))
	c.send(b.String())
	for i := range n {
		if got, want := c.reply(), ":"+strconv.Itoa(i+1)+"\r\n"; got != want {
			t.Fatalf("reply %d: %q want %q", i, got, want)
		}
	}
	if got := c.reply(); got != bulk(strconv.Itoa(n)) {
		t.Fatalf("GET: %q", got)
	}
	total := 0
	for _, call := range f.callLog() {
		var k int
		if _, err := fmt.Sscanf(call, "writes %d", &k); err == nil {
			if k > groupCap {
				t.Errorf("a group of %d writes, cap %d", k, groupCap)
			}
			total += k
		}
	}
	if total != n {
		t.Errorf("%d writes, want %d", total, n)
	}
}

func TestMultiExec(t *testing.T) {
	f := newFake()
	_, addr := startServer(t, Config{Service: f})
	c := dial(t, addr)
	f.callLog()
	steps := []step{
		s("EXEC", "-ERR EXEC without MULTI\r\n"),
		s("DISCARD", "-ERR DISCARD without MULTI\r\n"),
		s("MULTI", "+OK\r\n"),
		s("MULTI", "-ERR MULTI calls can not be nested\r\n"),
		s("INCR a", "+QUEUED\r\n"),
		s("INCRBY a 4", "+QUEUED\r\n"),
		s("DEL b", "+QUEUED\r\n"),
		s("GET a", "+QUEUED\r\n"),
		s("INCRBY a x", "+QUEUED\r\n"),
		s("DECR a", "+QUEUED\r\n"),
		s("PING", "+QUEUED\r\n"),
		s("EXEC", "*7\r\n:1\r\n:5\r\n:0\r\n"+bulk("5")+"-ERR value is not an integer or out of range\r\n:4\r\n+PONG\r\n"),
	}
	for _, st := range steps {
		c.send(enc(st.args...))
		if got := c.reply(); got != st.want {
			t.Errorf("%q: got %q want %q", st.args, got, st.want)
		}
	}
	wantCalls := []string{"writes 3", "get a", "record inc 1", "writes 1"}
	if got := f.callLog(); !slices.Equal(got, wantCalls) {
		t.Errorf("calls:\n got %q\nwant %q", got, wantCalls)
	}

	// Errors while queueing doom the transaction; nothing runs.
	for _, st := range []step{
		s("MULTI", "+OK\r\n"),
		s("INCR a", "+QUEUED\r\n"),
		s("NOSUCH", "-ERR unknown command 'NOSUCH', with args beginning with: \r\n"),
		s("INCR", "-ERR wrong number of arguments for 'incr' command\r\n"),
		s("INFO", "-ERR Command not allowed inside a transaction\r\n"),
		s("SET a 1", "-ERR SET"+counterTail+"\r\n"),
		s("EXEC", "-EXECABORT Transaction discarded because of previous errors.\r\n"),
		s("GET a", bulk("4")),
		s("MULTI", "+OK\r\n"),
		s("INCR a", "+QUEUED\r\n"),
		s("DISCARD", "+OK\r\n"),
		s("GET a", bulk("4")),
	} {
		c.send(enc(st.args...))
		if got := c.reply(); got != st.want {
			t.Errorf("%q: got %q want %q", st.args, got, st.want)
		}
	}
}

// tokens is a fake TokenLookup.
type tokens map[string]auth.Identity

func (m tokens) Lookup(tok string) (auth.Identity, bool) { id, ok := m[tok]; return id, ok }

var testTokens = tokens{
	"read-token-0123456789":  {Role: auth.RoleRead, Name: "reader", Via: auth.ViaToken},
	"write-token-0123456789": {Role: auth.RoleWrite, Via: auth.ViaToken},
	"admin-token-0123456789": {Role: auth.RoleAdmin, Name: "ops", Via: auth.ViaToken},
}

func TestAuth(t *testing.T) {
	f := newFake()
	_, addr := startServer(t, Config{Service: f, Auth: testTokens})
	c := dial(t, addr)
	for _, st := range []step{
		s("PING", "-NOAUTH Authentication required.\r\n"),
		s("INCR a", "-NOAUTH Authentication required.\r\n"),
		s("NOSUCH", "-NOAUTH Authentication required.\r\n"),
		s("HELLO 3", "-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time\r\n"),
		s("AUTH wrong", "-"+msgWrongPass+"\r\n"),
		s("AUTH reader read-token-0123456789x", "-"+msgWrongPass+"\r\n"),
		s("AUTH somebody read-token-0123456789", "-"+msgWrongPass+"\r\n"),
		s("AUTH a b c", "-ERR syntax error\r\n"),
		s("AUTH reader read-token-0123456789", "+OK\r\n"),
		s("GET a", null2),
		s("SCAN 0", "*2\r\n"+bulk("0")+"*0\r\n"),
		s("INCR a", "-NOPERM User reader has no permissions to run the 'incr' command\r\n"),
		s("DEL a", "-NOPERM User reader has no permissions to run the 'del' command\r\n"),
		s("PING", "+PONG\r\n"),
		s("AUTH default write-token-0123456789", "+OK\r\n"),
		s("INCR a", ":1\r\n"),
		s("RESET", "+RESET\r\n"),
		s("GET a", "-NOAUTH Authentication required.\r\n"),
	} {
		c.send(enc(st.args...))
		if got := c.reply(); got != st.want {
			t.Errorf("%q: got %q want %q", st.args, got, st.want)
		}
	}
	if r := c.do("HELLO 3 AUTH ops admin-token-0123456789 SETNAME x"); !strings.HasPrefix(r, "%8\r\n") {
		t.Fatalf("HELLO 3 AUTH: %q", r)
	}
	if r := c.do("GET a"); r != bulk("1") {
		t.Fatalf("GET after HELLO AUTH: %q", r)
	}
	// The refusals were counted once each; nothing else reached the service.
	calls := f.callLog()
	if !slices.Contains(calls, "record inc 3") || !slices.Contains(calls, "record inc 4") || !slices.Contains(calls, "record get 3") {
		t.Errorf("refusals not recorded: %q", calls)
	}
}

func TestUnauthenticatedLimits(t *testing.T) {
	f := newFake()
	_, addr := startServer(t, Config{Service: f, Auth: testTokens})
	c := dial(t, addr)
	c.send(enc("AUTH", strings.Repeat("x", 20<<10)))
	if r := c.reply(); r != "-ERR Protocol error: unauthenticated bulk length\r\n" {
		t.Fatalf("got %q", r)
	}
	c.expectClosed()
	c = dial(t, addr)
	c.send("*11\r\n")
	if r := c.reply(); r != "-ERR Protocol error: unauthenticated multibulk length\r\n" {
		t.Fatalf("got %q", r)
	}
	c.expectClosed()
}

func TestLimits(t *testing.T) {
	f := newFake()
	_, addr := startServer(t, Config{Service: f})
	f.callLog()
	for _, tc := range []struct{ send, want string }{
		{"*1\r\n$1073741824\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
		{"*1048577\r\n", "-ERR Protocol error: invalid multibulk length\r\n"},
		{"*2\r\n$4\r\nINCR\r\n$3\r\na", ""}, // cut: closed without a reply
	} {
		c := dial(t, addr)
		c.send(enc("INCR", "a") + tc.send)
		if r := c.reply(); r != ":1\r\n" && r != ":2\r\n" && r != ":3\r\n" {
			t.Fatalf("INCR before the bad command: %q", r)
		}
		if tc.want != "" {
			if r := c.reply(); r != tc.want {
				t.Fatalf("%q: got %q want %q", tc.send, r, tc.want)
			}
			c.expectClosed()
		} else {
			c.nc.(*net.TCPConn).CloseWrite()
			c.expectClosed()
		}
	}
	if got := f.callLog(); len(got) != 3 {
		t.Errorf("the bad commands reached the service: %q", got)
	}
	// Command errors keep the connection and change nothing.
	c := dial(t, addr)
	for _, cmd := range []string{"INCR", "INCRBY a x", "NOSUCH a", "INCRBY a 9223372036854775807", "SET a 1"} {
		if r := c.do(cmd); !strings.HasPrefix(r, "-") {
			t.Errorf("%s: %q", cmd, r)
		}
	}
	if r := c.do("GET a"); r != bulk("3") {
		t.Fatalf("GET a: %q", r)
	}
}

func TestQuit(t *testing.T) {
	_, addr := startServer(t, Config{})
	c := dial(t, addr)
	c.send(enc("INCR", "a") + enc("QUIT") + enc("INCR", "a"))
	if r := c.reply(); r != ":1\r\n" {
		t.Fatal(r)
	}
	if r := c.reply(); r != "+OK\r\n" {
		t.Fatal(r)
	}
	c.expectClosed()
}

func TestMaxClients(t *testing.T) {
	srv, addr := startServer(t, Config{MaxClients: 2})
	a, b := dial(t, addr), dial(t, addr)
	a.do("PING")
	b.do("PING")
	c := dial(t, addr)
	if r := c.reply(); r != "-ERR max number of clients reached\r\n" {
		t.Fatalf("got %q", r)
	}
	c.expectClosed()
	a.nc.Close()
	testutil.WaitFor(t, "a slot", func() bool { return srv.Clients() == 1 })
	d := dial(t, addr)
	if r := d.do("PING"); r != "+PONG\r\n" {
		t.Fatalf("got %q", r)
	}
}

func TestIdleTimeout(t *testing.T) {
	srv, addr := startServer(t, Config{IdleTimeout: 50 * time.Millisecond})
	c := dial(t, addr)
	if r := c.do("PING"); r != "+PONG\r\n" {
		t.Fatal(r)
	}
	testutil.WaitFor(t, "the idle connection closed", func() bool { return srv.Clients() == 0 })
	c.expectClosed()
}

func TestTLS(t *testing.T) {
	cert := selfSigned(t)
	_, addr := startServer(t, Config{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	nc, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c := newClient(t, nc)
	if r := c.do("INCR a"); r != ":1\r\n" {
		t.Fatalf("got %q", r)
	}
	// Plain text on the TLS port gets nowhere.
	p := dial(t, addr)
	p.send(enc("PING"))
	p.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64)
	n, _ := p.br.Read(buf)
	if strings.Contains(string(buf[:n]), "PONG") {
		t.Fatal("plain text served on the TLS listener")
	}
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func TestShutdownAnswersInFlight(t *testing.T) {
	f := newFake()
	f.block, f.entered = make(chan struct{}), make(chan struct{}, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := New(Config{Service: f, Log: testutil.Logger(t, 0)})
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	c := dial(t, ln.Addr().String())
	idle := dial(t, ln.Addr().String())
	idle.do("PING")
	c.send(enc("INCR", "a"))
	<-f.entered // the write is in flight
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(context.Background()) }()
	testutil.WaitFor(t, "the listener closed", func() bool {
		select {
		case err := <-errc:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("Serve: %v", err)
			}
			return true
		default:
			return false
		}
	})
	idle.expectClosed()
	close(f.block)
	if r := c.reply(); r != ":1\r\n" {
		t.Fatalf("in-flight INCR: %q", r)
	}
	c.expectClosed()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if srv.Clients() != 0 {
		t.Fatal("clients left")
	}
	if err := srv.Serve(ln); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Serve after Shutdown: %v", err)
	}
}

func TestShutdownDeadline(t *testing.T) {
	f := newFake()
	f.block, f.entered = make(chan struct{}), make(chan struct{}, 1)
	srv, addr := startServerNoCleanup(t, f)
	c := dial(t, addr)
	c.send(enc("INCR", "a"))
	<-f.entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// The write in flight is cancelled, the connection cut.
	if err := srv.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown: %v", err)
	}
	c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(c.br); err != nil && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("want the connection closed, got %v", err)
	}
}

func startServerNoCleanup(t *testing.T, f *fakeService) (*Server, string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := New(Config{Service: f, Log: testutil.Logger(t, 0)})
	go srv.Serve(ln)
	return srv, ln.Addr().String()
}

func TestAuthFailuresClose(t *testing.T) {
	_, addr := startServer(t, Config{Auth: testTokens})
	c := dial(t, addr)
	for range maxAuthFailures {
		if r := c.do("AUTH guess-0123456789abcdef"); r != "-"+msgWrongPass+"\r\n" {
			t.Fatalf("got %q", r)
		}
	}
	c.expectClosed()
}

func TestClientInfo(t *testing.T) {
	_, addr := startServer(t, Config{Auth: testTokens})
	c := dial(t, addr)
	c.do("AUTH ops admin-token-0123456789")
	c.do("CLIENT SETNAME app")
	c.do("CLIENT SETINFO LIB-NAME redis-py")
	r := c.do("CLIENT INFO")
	for _, want := range []string{"id=1 addr=" + c.nc.LocalAddr().String() + " laddr=" + c.nc.RemoteAddr().String(), " name=app ", " db=0 ", " multi=-1 ", " user=ops ", " resp=2 ", " lib-name=redis-py lib-ver=\n"} {
		if !strings.Contains(r, want) {
			t.Errorf("CLIENT INFO %q lacks %q", r, want)
		}
	}
}

func TestInline(t *testing.T) {
	_, addr := startServer(t, Config{})
	c := dial(t, addr)
	c.send("PING\r\n\r\nINCRBY \"a key\" 5\r\nget 'a key'\n")
	for _, want := range []string{"+PONG\r\n", ":5\r\n", bulk("5")} {
		if got := c.reply(); got != want {
			t.Fatalf("got %q want %q", got, want)
		}
	}
}

// TestMultiQueuedBytesBounded: a MULTI holds at most Limits.MaxQuery bytes
// of queued commands, as one command may: past it the transaction is
// doomed, and a new MULTI starts from nothing.
func TestMultiQueuedBytesBounded(t *testing.T) {
	_, addr := startServer(t, Config{Limits: resp.Limits{MaxQuery: 4096}})
	c := dial(t, addr)
	big := strings.Repeat("k", 500) + " " + strings.Repeat("l", 500) // 1,076 bytes queued
	for _, st := range []step{
		s("MULTI", "+OK\r\n"),
		s("MGET "+big, "+QUEUED\r\n"),
		s("MGET "+big, "+QUEUED\r\n"),
		s("MGET "+big, "+QUEUED\r\n"),
		s("MGET "+big, "-ERR too many bytes queued in MULTI\r\n"),
		s("EXEC", "-EXECABORT Transaction discarded because of previous errors.\r\n"),
		s("MULTI", "+OK\r\n"),
		s("MGET "+big, "+QUEUED\r\n"),
		s("MGET "+big, "+QUEUED\r\n"),
		s("MGET "+big, "+QUEUED\r\n"),
		s("DISCARD", "+OK\r\n"),
	} {
		c.send(enc(st.args...))
		if got := c.reply(); got != st.want {
			t.Errorf("%.20q: got %q want %q", st.args, got, st.want)
		}
	}
}

// TestUnauthenticatedClientThatDoesNotRead: a client without a token that
// sends commands and never reads their replies is closed AuthTimeout after
// connecting all the same; it does not keep its slot, blocked on a write.
func TestUnauthenticatedClientThatDoesNotRead(t *testing.T) {
	defer func(d time.Duration) { authTimeout = d }(authTimeout)
	authTimeout = 300 * time.Millisecond
	srv, addr := startServer(t, Config{Auth: testTokens})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.(*net.TCPConn).SetReadBuffer(4096)
	go func() {
		// Each PING is answered with a 33-byte NOAUTH: far more replies
		// than the sockets' buffers hold.
		chunk := []byte(strings.Repeat("PING\r\n", 10000))
		for range 1000 {
			if _, err := nc.Write(chunk); err != nil {
				return
			}
		}
	}()
	testutil.WaitFor(t, "the unauthenticated connection closed", func() bool { return srv.Clients() == 0 })
}

// TestResetDoesNotExtendAuthTimeout: RESET on a connection that never
// authenticated does not restart its AuthTimeout; on one that did, the
// timeout starts from the RESET.
func TestResetDoesNotExtendAuthTimeout(t *testing.T) {
	defer func(d time.Duration) { authTimeout = d }(authTimeout)
	authTimeout = 300 * time.Millisecond
	_, addr := startServer(t, Config{Auth: testTokens})
	c := dial(t, addr)
	c.nc.SetDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, err := io.WriteString(c.nc, enc("RESET")); err != nil {
			break
		}
		var b strings.Builder
		if err := readValue(c.br, &b); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("RESET kept an unauthenticated connection open past AuthTimeout")
			}
			break // closed
		}
	}

	c = dial(t, addr)
	if r := c.do("AUTH write-token-0123456789"); r != "+OK\r\n" {
		t.Fatal(r)
	}
	if r := c.do("RESET"); r != "+RESET\r\n" {
		t.Fatal(r)
	}
	if r := c.do("PING"); r != "-NOAUTH Authentication required.\r\n" {
		t.Fatal(r)
	}
}

// TestReloadedTokensApplyToOpenConnections: after the auth file is
// reloaded, a connection whose token was removed is closed at its next
// command, and one whose token changed role has the new role.
func TestReloadedTokensApplyToOpenConnections(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth")
	write := func(content string) {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("gone-token-0123456789abcdef write\nkept-token-0123456789abcdef write\n")
	file, err := auth.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, addr := startServer(t, Config{Service: newFake(), Auth: file})
	gone, kept := dial(t, addr), dial(t, addr)
	for c, tok := range map[*client]string{gone: "gone-token-0123456789abcdef", kept: "kept-token-0123456789abcdef"} {
		if r := c.do("AUTH " + tok); r != "+OK\r\n" {
			t.Fatalf("AUTH: %q", r)
		}
		if r := c.do("INCR k"); !strings.HasPrefix(r, ":") {
			t.Fatalf("INCR before the reload: %q", r)
		}
	}
	write("kept-token-0123456789abcdef read\n")
	if _, err := file.Reload(); err != nil {
		t.Fatal(err)
	}
	if r := gone.do("GET k"); r != "-"+msgRevoked+"\r\n" {
		t.Fatalf("removed token, next command: %q", r)
	}
	gone.expectClosed()
	if r := kept.do("INCR k"); r != "-NOPERM User default has no permissions to run the 'incr' command\r\n" {
		t.Fatalf("token now read-only, INCR: %q", r)
	}
	if r := kept.do("GET k"); !strings.HasPrefix(r, "$") {
		t.Fatalf("token now read-only, GET: %q", r)
	}
}

// Once draining, every command but QUIT is refused with TRYAGAIN, nothing
// reaches the service (a transaction begun before fails as a whole), and
// the refusals are counted for the owner to see the traffic stop.
func TestDrainRefusesEverythingButQuit(t *testing.T) {
	f := newFake()
	srv, addr := startServer(t, Config{Service: f})
	c := dial(t, addr)
	for _, st := range []step{
		s("INCR a", ":1\r\n"),
		s("MULTI", "+OK\r\n"),
		s("INCR a", "+QUEUED\r\n"),
	} {
		c.send(enc(st.args...))
		if got := c.reply(); got != st.want {
			t.Fatalf("%q: got %q want %q", st.args, got, st.want)
		}
	}
	srv.Drain()
	refused := "-" + DrainingReply + "\r\n"
	for _, args := range [][]string{{"INCR", "a"}, {"EXEC"}, {"GET", "a"}, {"PING"}, {"NOSUCH"}} {
		c.send(enc(args...))
		if got := c.reply(); got != refused {
			t.Fatalf("%q while draining: %q, want %q", args, got, refused)
		}
	}
	if n := srv.Drained(); n != 5 {
		t.Fatalf("Drained() = %d, want 5", n)
	}
	c.send(enc("QUIT"))
	if r := c.reply(); r != "+OK\r\n" {
		t.Fatal(r)
	}
	c.expectClosed()
	c2 := dial(t, addr)
	c2.send(enc("GET", "a"))
	if got := c2.reply(); got != refused {
		t.Fatalf("a new connection while draining: %q", got)
	}
	if r, _ := f.Get(context.Background(), "a"); r.Value != 1 {
		t.Fatalf("a = %d after the drain, want 1: a refused write was applied", r.Value)
	}
}
