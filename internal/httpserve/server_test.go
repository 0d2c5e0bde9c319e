package httpserve

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
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
