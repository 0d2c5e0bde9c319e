package httpserve

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/api"
	"github.com/dcounter/dcounter/internal/service"
)

func serve(t *testing.T, cfg Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(cfg)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		if err := s.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve after Shutdown: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func TestBridgeCarriesTheRequestAndTheAnswer(t *testing.T) {
	url := serve(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Header.Get("Host") != "" || r.Host == "" {
			t.Errorf("Host in the header map (%q) or not in r.Host (%q)", r.Header.Get("Host"), r.Host)
		}
		w.Header().Set("X-Echo", r.Method+" "+r.URL.EscapedPath()+" "+r.URL.RawQuery+" "+r.Header.Get("X-In")+" "+string(b))
		w.Header().Add("X-Two", "a")
		w.Header().Add("X-Two", "b")
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusTeapot)
		io.WriteString(w, "<html>hi</html>")
	})})
	req, _ := http.NewRequest("PUT", url+"/a%2Fb?q=1", strings.NewReader("body"))
	req.Header.Set("X-In", "in")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTeapot || string(b) != "<html>hi</html>" ||
		resp.Header.Get("X-Echo") != "PUT /a%2Fb q=1 in body" || strings.Join(resp.Header.Values("X-Two"), ",") != "a,b" ||
		!resp.Close || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("got %d %q %v close=%v", resp.StatusCode, b, resp.Header, resp.Close)
	}
}

func TestBridgeSurvivesAPanickingHandler(t *testing.T) {
	url := serve(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/panic" {
			w.Header().Set("X-Half", "written")
			panic("boom")
		}
		io.WriteString(w, "fine")
	})})
	if resp, err := http.Get(url + "/panic"); err == nil {
		resp.Body.Close()
		t.Fatalf("a panicking handler answered %s; want the connection closed with no answer", resp.Status)
	}
	resp, err := http.Get(url + "/ok")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "fine" {
		t.Errorf("after a panic: %q", b)
	}
}

func TestShutdownBeforeServe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{Handler: http.NotFoundHandler()})
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	if err := <-done; err != nil {
		t.Errorf("Serve after Shutdown: %v", err)
	}
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Error("the listener still accepts after Shutdown")
	}
}

func TestBridgeGivesTheLocalAddress(t *testing.T) {
	url := serve(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		if a != nil {
			io.WriteString(w, a.String())
		}
	})})
	resp, err := http.Get(url + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if "http://"+string(b) != url {
		t.Errorf("local address %q, want the listener's %s", b, url)
	}
}

// panicking is a service whose Add panics.
type panicking struct{ service.Service }

func (panicking) Add(context.Context, string, int64, service.WriteOptions) (service.Counter, bool, error) {
	panic("boom")
}

func TestQuickPanicClosesTheConnection(t *testing.T) {
	url := serve(t, Config{Handler: http.NotFoundHandler(), Quick: &api.Quick{Service: panicking{}}})
	if resp, err := http.Post(url+"/increment", "", nil); err == nil {
		resp.Body.Close()
		t.Fatalf("a panicking write answered %s; want the connection closed with no answer", resp.Status)
	}
	resp, err := http.Get(url + "/nope") // the server still serves
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("after a panic: %s", resp.Status)
	}
}

func TestRequestsAfterShutdownBeganAreRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	s := New(Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			entered <- struct{}{}
			<-release
		}
		io.WriteString(w, "ok")
	})})
	go s.Serve(ln)
	url := "http://" + ln.Addr().String()
	// A request in flight, and on another connection half a request
	// (so that connection is not idle, which Shutdown would close).
	go http.Get(url + "/slow")
	<-entered
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST /increment HTTP/1.1\r\n")
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	for deadline := time.Now().Add(10 * time.Second); !s.stopping.Load(); runtime.Gosched() {
		if time.Now().After(deadline) {
			t.Fatal("Shutdown did not begin")
		}
	}
	io.WriteString(c, "Host: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("the request that began before Shutdown: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !resp.Close {
		t.Errorf("a request finished after Shutdown began: %s, close=%v; want 503 and the connection closed", resp.Status, resp.Close)
	}
	close(release)
	if err := <-shut; err != nil {
		t.Error(err)
	}
}
