// Command idleconns measures what idle keep-alive connections cost a
// server: it opens N connections to ADDR, sends one GET /counter on each,
// reads the answer, keeps them all open, and prints the server's RSS
// (from /proc/PID/status) before and after.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "the server's address")
	n := flag.Int("n", 5000, "connections to open")
	pid := flag.Int("pid", 0, "the server's process ID")
	flag.Parse()
	before := rssKB(*pid)
	conns := make([]net.Conn, 0, *n)
	for range *n {
		c, err := net.Dial("tcp", *addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "idleconns:", err)
			os.Exit(1)
		}
		fmt.Fprintf(c, "GET /counter HTTP/1.1\r\nHost: bench\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, "idleconns:", err)
			os.Exit(1)
		}
		resp.Body.Close()
		conns = append(conns, c)
	}
	time.Sleep(2 * time.Second) // let the server settle
	after := rssKB(*pid)
	fmt.Printf("RSS before %d kB, after %d idle connections %d kB: %.1f kB per connection\n",
		before, len(conns), after, float64(after-before)/float64(len(conns)))
}

func rssKB(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		fmt.Fprintln(os.Stderr, "idleconns:", err)
		os.Exit(1)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			var kb int
			fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
			return kb
		}
	}
	return 0
}
