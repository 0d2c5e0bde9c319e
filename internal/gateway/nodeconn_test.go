package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/dcounter/dcounter/internal/api"
	"github.com/dcounter/dcounter/internal/testutil"
)

// rawNode is a TCP server that answers each connection with script, which
// sees the connection's requests through br.
type rawNode struct {
	t      *testing.T
	ln     net.Listener
	url    string
	mu     sync.Mutex
	reqs   []string // request lines, in the order they arrived
	conns  int
	wg     sync.WaitGroup
	script func(n *rawNode, conn int, c net.Conn, br *bufio.Reader)
}

func newRawNode(t *testing.T, script func(n *rawNode, conn int, c net.Conn, br *bufio.Reader)) *rawNode {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &rawNode{t: t, ln: ln, url: "http://" + ln.Addr().String(), script: script}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.mu.Lock()
			n.conns++
			i := n.conns
			n.mu.Unlock()
			n.wg.Add(1)
			go func() {
				defer n.wg.Done()
				defer c.Close()
				n.script(n, i, c, bufio.NewReader(c))
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); n.wg.Wait() })
	return n
}

// read reads one request from br, recording its request line; false when
// the connection ended.
func (n *rawNode) read(br *bufio.Reader) (*http.Request, bool) {
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, false
	}
	io.Copy(io.Discard, req.Body)
	n.mu.Lock()
	n.reqs = append(n.reqs, req.Method+" "+req.RequestURI)
	n.mu.Unlock()
	return req, true
}

func (n *rawNode) requests() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.reqs...)
}

func (n *rawNode) connections() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.conns
}

const okAnswer = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{\"value\":1}\n"

// answerAll answers every request on every connection with answer.
func answerAll(answer string) func(*rawNode, int, net.Conn, *bufio.Reader) {
	return func(n *rawNode, _ int, c net.Conn, br *bufio.Reader) {
		for {
			if _, ok := n.read(br); !ok {
				return
			}
			if _, err := io.WriteString(c, answer); err != nil {
				return
			}
		}
	}
}

func doGet(t *testing.T, p *nodeConns, n *rawNode) (nodeResponse, error) {
	t.Helper()
	return p.do(context.Background(), n.url, "GET", "/counter", nil, nil, time.Now().Add(10*time.Second))
}

func doPost(t *testing.T, p *nodeConns, n *rawNode) (nodeResponse, error) {
	t.Helper()
	return p.do(context.Background(), n.url, "POST", "/increment", []nodeHeader{{IdempotencyHeader, "k1"}}, []byte(`{"by":2}`), time.Now().Add(10*time.Second))
}

func TestNodeConnsRequestBytes(t *testing.T) {
	var got bytes.Buffer
	var mu sync.Mutex
	n := newRawNode(t, func(n *rawNode, _ int, c net.Conn, br *bufio.Reader) {
		buf := make([]byte, 0, 512)
		for !bytes.HasSuffix(buf, []byte("{}")) {
			b, err := br.ReadByte()
			if err != nil {
				return
			}
			buf = append(buf, b)
		}
		mu.Lock()
		got.Write(buf)
		mu.Unlock()
		io.WriteString(c, okAnswer)
	})
	p := &nodeConns{}
	_, err := p.do(context.Background(), n.url+"/pre", "POST", "/increment?x=1",
		[]nodeHeader{{"Content-Type", "application/json"}, {IdempotencyHeader, "abc"}}, []byte("{}"), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	want := "POST /pre/increment?x=1 HTTP/1.1\r\nHost: " + strings.TrimPrefix(n.url, "http://") + "\r\n" +
		"User-Agent: dcounter-gateway\r\nContent-Type: application/json\r\nIdempotency-Key: abc\r\n" +
		"Content-Length: 2\r\n\r\n{}"
	mu.Lock()
	defer mu.Unlock()
	if got.String() != want {
		t.Errorf("request bytes:\n%q\nwant\n%q", got.String(), want)
	}
}

func TestNodeConnsReusesConnections(t *testing.T) {
	n := newRawNode(t, answerAll(okAnswer))
	p := &nodeConns{}
	defer p.close()
	for i := range 5 {
		resp, err := doGet(t, p, n)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if resp.status != 200 || string(resp.body) != "{\"value\":1}\n" || resp.contentType != "application/json" {
			t.Fatalf("request %d: got %+v", i, resp)
		}
	}
	if c := n.connections(); c != 1 {
		t.Errorf("%d connections for 5 sequential requests, want 1", c)
	}
}

// The answer arrives one byte per write.
func TestNodeConnsSplitAnswer(t *testing.T) {
	answer := "HTTP/1.1 409 Conflict\r\nContent-Type: application/json\r\nAllow: GET, POST\r\nIdempotent-Replayed: true\r\nContent-Length: 5\r\n\r\nhello"
	n := newRawNode(t, func(n *rawNode, _ int, c net.Conn, br *bufio.Reader) {
		for {
			if _, ok := n.read(br); !ok {
				return
			}
			for i := range len(answer) {
				if _, err := c.Write([]byte{answer[i]}); err != nil {
					return
				}
			}
		}
	})
	p := &nodeConns{}
	defer p.close()
	for range 2 {
		resp, err := doPost(t, p, n)
		if err != nil {
			t.Fatal(err)
		}
		want := nodeResponse{status: 409, contentType: "application/json", allow: "GET, POST", replayed: "true", body: []byte("hello")}
		if resp.status != want.status || resp.contentType != want.contentType || resp.allow != want.allow ||
			resp.replayed != want.replayed || string(resp.body) != string(want.body) {
			t.Errorf("got %+v, want %+v", resp, want)
		}
	}
	if c := n.connections(); c != 1 {
		t.Errorf("%d connections, want 1 (the split answer is complete and the connection reusable)", c)
	}
}

func TestNodeConnsRefusesMalformedAnswers(t *testing.T) {
	long := strings.Repeat("a", 5000)
	for name, answer := range map[string]string{
		"chunked":              "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
		"no length":            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhi",
		"body too large":       "HTTP/1.1 200 OK\r\nContent-Length: 1048577\r\n\r\n",
		"conflicting lengths":  "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi",
		"negative length":      "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"signed length":        "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nhi",
		"bad status line":      "HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
		"status not numeric":   "HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
		"informational":        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"folded header":        "HTTP/1.1 200 OK\r\nContent-Type: a\r\n b\r\nContent-Length: 0\r\n\r\n",
		"bare LF":              "HTTP/1.1 200 OK\nContent-Length: 0\n\n",
		"header line too long": "HTTP/1.1 200 OK\r\nX-Long: " + long + "\r\nContent-Length: 0\r\n\r\n",
		"headers too long":     "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-A: "+long[:3000]+"\r\n", 30) + "Content-Length: 0\r\n\r\n",
		"short body":           "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhi",
		"control byte":         "HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			n := newRawNode(t, func(n *rawNode, _ int, c net.Conn, br *bufio.Reader) {
				if _, ok := n.read(br); ok {
					io.WriteString(c, answer)
					if name != "short body" && name != "no length" {
						io.Copy(io.Discard, br) // hold the connection open until the client drops it
					}
				}
			})
			p := &nodeConns{}
			defer p.close()
			_, err := doGet(t, p, n)
			if err == nil {
				t.Fatalf("no error for %q", answer)
			}
			if errors.Is(err, errNoAnswer) {
				t.Errorf("error %v counts as no answer", err)
			}
			p.mu.Lock()
			idle := len(p.idle)
			p.mu.Unlock()
			if idle != 0 {
				t.Errorf("the connection was kept after %v", err)
			}
			if got := len(n.requests()); got != 1 {
				t.Errorf("the node got %d requests, want 1 (no resend)", got)
			}
		})
	}
}

func TestNodeConnsConnectionClose(t *testing.T) {
	for name, answer := range map[string]string{
		"close":         "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi",
		"http/1.0":      "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi",
		"extra bytes":   "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi!!",
		"no body (204)": "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			n := newRawNode(t, answerAll(answer))
			p := &nodeConns{}
			defer p.close()
			for i := range 2 {
				if _, err := doGet(t, p, n); err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
			}
			if c := n.connections(); c != 2 {
				t.Errorf("%d connections, want 2: the first may not be reused", c)
			}
		})
	}
}

// The node closes a keep-alive connection while it is idle in the pool:
// the next request notices and uses a new one, read or write.
func TestNodeConnsIdleConnectionClosedByNode(t *testing.T) {
	n := newRawNode(t, func(n *rawNode, _ int, c net.Conn, br *bufio.Reader) {
		if _, ok := n.read(br); ok {
			io.WriteString(c, okAnswer) // then close: one request per connection
		}
	})
	p := &nodeConns{}
	defer p.close()
	for i, do := range []func(*testing.T, *nodeConns, *rawNode) (nodeResponse, error){doGet, doPost, doPost, doGet} {
		// The node has closed the previous connection once the client
		// reads EOF on it; wait for that to be visible before reusing.
		waitFor(t, "the node to close its connection", func() bool {
			p.mu.Lock()
			defer p.mu.Unlock()
			return len(p.idle) == 0 || !nodeConnAlive(p.idle[0].c)
		})
		if _, err := do(t, p, n); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if got := len(n.requests()); got != 4 {
		t.Errorf("the node got %d requests, want 4", got)
	}
}

// The node reads a request on a reused connection and closes it without
// answering: a read is sent again on a new connection, a write is not.
func TestNodeConnsResendOnlyWhenSafe(t *testing.T) {
	script := func(n *rawNode, conn int, c net.Conn, br *bufio.Reader) {
		if conn == 1 {
			if _, ok := n.read(br); ok {
				io.WriteString(c, okAnswer)
			}
			n.read(br) // the second request: dropped unanswered
			return
		}
		answerAll(okAnswer)(n, conn, c, br)
	}
	t.Run("read", func(t *testing.T) {
		n := newRawNode(t, script)
		p := &nodeConns{}
		defer p.close()
		if _, err := doGet(t, p, n); err != nil {
			t.Fatal(err)
		}
		if _, err := doGet(t, p, n); err != nil {
			t.Fatalf("the read was not resent: %v", err)
		}
		if got := n.requests(); len(got) != 3 {
			t.Errorf("node got %q, want the read, then the lost read and its resend", got)
		}
	})
	t.Run("write", func(t *testing.T) {
		n := newRawNode(t, script)
		p := &nodeConns{}
		defer p.close()
		if _, err := doPost(t, p, n); err != nil {
			t.Fatal(err)
		}
		_, err := doPost(t, p, n)
		if !errors.Is(err, errNoAnswer) {
			t.Fatalf("lost write: err = %v, want %v", err, errNoAnswer)
		}
		if notSent(err) {
			t.Errorf("a lost write counts as never sent: %v", err)
		}
		if got := n.requests(); len(got) != 2 {
			t.Errorf("node got %q, want the write and the lost write only", got)
		}
	})
}

func TestNodeConnsTimeouts(t *testing.T) {
	hold := make(chan struct{})
	n := newRawNode(t, func(n *rawNode, _ int, c net.Conn, br *bufio.Reader) {
		if _, ok := n.read(br); ok {
			<-hold
		}
	})
	defer close(hold)
	p := &nodeConns{}
	defer p.close()
	_, err := p.do(context.Background(), n.url, "GET", "/counter", nil, nil, time.Now().Add(50*time.Millisecond))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("deadline: err = %v, want %v", err, os.ErrDeadlineExceeded)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := p.do(ctx, n.url, "GET", "/counter", nil, nil, time.Time{})
		done <- err
	}()
	waitFor(t, "the second request to reach the node", func() bool { return len(n.requests()) == 2 })
	cancel()
	if err := <-done; err == nil {
		t.Error("a cancelled request succeeded")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) != 0 {
		t.Error("a timed-out connection went back to the pool")
	}
}

func TestNodeConnsDialErrorIsNotSent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close()
	p := &nodeConns{}
	_, err = p.do(context.Background(), url, "POST", "/increment", nil, []byte{}, time.Now().Add(5*time.Second))
	if err == nil || !notSent(err) {
		t.Errorf("err = %v, want one that counts as never sent", err)
	}
}

func TestNodeConnsRefusesUnsafeRequests(t *testing.T) {
	p := &nodeConns{}
	for _, c := range []struct {
		method, uri string
		hdr         []nodeHeader
	}{
		{"GET", "/a b", nil},
		{"GET", "/a\r\nX: y", nil},
		{"G T", "/", nil},
		{"GET", "x", nil},
		{"GET", "/", []nodeHeader{{"Authorization", "a\r\nX-Dcounter-Identity-Role: write"}}},
		{"GET", "/", []nodeHeader{{"Bad Name", "v"}}},
	} {
		if _, err := p.do(context.Background(), "http://127.0.0.1:1", c.method, c.uri, c.hdr, nil, time.Time{}); err == nil || notSent(err) {
			t.Errorf("%q %q %v: err = %v, want a refusal", c.method, c.uri, c.hdr, err)
		}
	}
}

// parseBothWays parses data as one answer, whole and one byte at a time, and
// checks that both agree.
func parseBothWays(t *testing.T, data []byte, method string) (nodeResponse, bool, error) {
	r := bytes.NewReader(data)
	br := bufio.NewReaderSize(r, 4096)
	resp, keep, err := readNodeResponse(br, method)
	// Bytes after the answer make it unreusable only once they have
	// arrived: read one at a time, they have not.
	trailing := r.Len()+br.Buffered() > 0
	resp2, keep2, err2 := readNodeResponse(bufio.NewReaderSize(iotest.OneByteReader(bytes.NewReader(data)), 4096), method)
	if (err == nil) != (err2 == nil) || keep != keep2 && err == nil && !trailing || resp.status != resp2.status ||
		!bytes.Equal(resp.body, resp2.body) || resp.contentType != resp2.contentType {
		t.Fatalf("whole: %+v %v %v; split: %+v %v %v", resp, keep, err, resp2, keep2, err2)
	}
	return resp, keep, err
}

func FuzzReadNodeResponse(f *testing.F) {
	for _, s := range []string{
		okAnswer,
		"HTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx",
		"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
	} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, data []byte, head bool) {
		method := "GET"
		if head {
			method = "HEAD"
		}
		resp, _, err := parseBothWays(t, data, method)
		if err != nil {
			return
		}
		if resp.status < 200 || resp.status > 599 || len(resp.body) > maxNodeBody {
			t.Errorf("accepted status %d, body of %d bytes", resp.status, len(resp.body))
		}
		if !bytes.HasPrefix(data, []byte("HTTP/1.")) {
			t.Errorf("accepted %q", data)
		}
	})
}

// BenchmarkNodeClient compares the gateway's two ways to a node on the same
// request (a POST /increment with an Idempotency-Key, answered by a net/http
// server in this process): net/http's client (still used for https nodes)
// and nodeConns. Besides ns/op and allocations it reports cpu-us/op: the
// process's user+system CPU time per request (getrusage), server included —
// the server's share is the same on both sides, so the difference is the
// client's.
func BenchmarkNodeClient(b *testing.B) {
	node := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		api.WriteJSON(w, http.StatusOK, api.CounterResponse{Key: "default", Value: 1})
	}))
	defer node.Close()
	g := &Gateway{cfg: Config{ProxyTimeout: 5 * time.Second}, client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}}
	defer g.client.CloseIdleConnections()
	var p nodeConns
	defer p.close()
	hdr := []nodeHeader{{"Content-Type", "application/json"}, {IdempotencyHeader, "bench-key"}}
	body := []byte(`{"amount":1}`)
	for _, c := range []struct {
		name string
		do   func(context.Context) (nodeResponse, error)
	}{
		{"net-http", func(ctx context.Context) (nodeResponse, error) {
			return g.forwardTLS(ctx, "POST", node.URL+"/increment", hdr, body)
		}},
		{"own", func(ctx context.Context) (nodeResponse, error) {
			return p.do(ctx, node.URL, "POST", "/increment", hdr, body, time.Now().Add(5*time.Second))
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(16)
			before := testutil.CPUTime(b)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				for pb.Next() {
					resp, err := c.do(ctx)
					if err != nil || resp.status != http.StatusOK {
						b.Errorf("%d %v", resp.status, err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(testutil.CPUTime(b)-before)/float64(time.Microsecond)/float64(b.N), "cpu-us/op")
		})
	}
}
