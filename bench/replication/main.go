// Command replication measures the cost of replication: it starts N real
// dcounter node processes on 127.0.0.1 (random free ports, temp data dirs,
// the default --fsync always, gossip keyed with a fresh cluster key), drives
// durable writes at them from concurrent HTTP clients, waits until every
// node reports the exact totals, and prints one line of figures per run:
// writes/s, the CPU of all node processes (utime+stime from /proc/PID/stat)
// from the first write to convergence, the cluster's idle CPU over an equal
// time (measured just before the writes), and the gossip bytes the nodes
// sent (dcounter_gossip_bytes_total, direction out), their messages, the
// nodes' write-ahead log fsyncs, and its own CPU while writing.
//
// bench/replication.sh runs it for 1, 5 and 20 nodes and derives the cost of
// a replica applying a write from those lines.
//
//	go run ./bench/replication -bin BINARY -nodes 20 [-writes 10000 -clients 16 -keys 20]
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dcounter/dcounter/internal/testutil"
)

func main() {
	bin := flag.String("bin", "", "dcounter binary to run (required)")
	nodes := flag.Int("nodes", 5, "cluster size")
	writes := flag.Int("writes", 10000, "durable writes to send")
	clients := flag.Int("clients", 16, "concurrent clients")
	keys := flag.Int("keys", 20, "distinct keys written")
	idle := flag.Duration("idle", 3*time.Second, "idle window measured before the writes (its CPU rate is scaled to the run's length)")
	debug := flag.Bool("debug", false, "give every node a --debug-addr (pprof) and print them")
	hold := flag.Duration("hold", 0, "keep the cluster up this long after convergence (e.g. to take profiles)")
	label := flag.String("label", "", "label printed at the start of the result line")
	extra := flag.String("node-flags", "", "extra flags for every node, space-separated")
	env := flag.String("node-env", "", "extra environment for every node, space-separated NAME=VALUE pairs (e.g. GOMAXPROCS=1)")
	flag.Parse()
	if *bin == "" {
		fmt.Fprintln(os.Stderr, "replication: -bin is required")
		os.Exit(2)
	}
	for _, kv := range strings.Fields(*env) {
		if name, _, ok := strings.Cut(kv, "="); !ok || name == "" {
			fmt.Fprintf(os.Stderr, "replication: -node-env: %q is not NAME=VALUE\n", kv)
			os.Exit(2)
		}
	}
	r, err := run(config{bin: *bin, nodes: *nodes, writes: *writes, clients: *clients, keys: *keys,
		idle: *idle, debug: *debug, hold: *hold, extra: strings.Fields(*extra), env: strings.Fields(*env)})
	if err != nil {
		fmt.Fprintln(os.Stderr, "replication:", err)
		os.Exit(1)
	}
	// One machine-readable line: name=value pairs.
	fmt.Printf("%snodes=%d writes=%d write_s=%.3f conv_s=%.3f writes_per_s=%.1f cpu_s=%.3f idle_cpu_s=%.3f bytes_out=%d msgs_out=%d fsyncs=%d driver_cpu_s=%.3f\n",
		prefix(*label), *nodes, *writes, r.writeTime.Seconds(), r.runTime.Seconds(), float64(*writes)/r.writeTime.Seconds(),
		r.cpu, r.idleCPU, r.bytesOut, r.msgsOut, r.fsyncs, r.driverCPU)
}

func prefix(l string) string {
	if l == "" {
		return ""
	}
	return "label=" + l + " "
}

type config struct {
	bin                    string
	nodes, writes, clients int
	keys                   int
	idle, hold             time.Duration
	debug                  bool
	extra                  []string // node flags
	env                    []string // node environment, NAME=VALUE
}

type result struct {
	writeTime, runTime time.Duration
	cpu, idleCPU       float64 // seconds
	driverCPU          float64 // seconds: this process's own, while it wrote
	bytesOut, msgsOut  int64
	fsyncs             int64
}

type node struct {
	name, gossip, http, debug string
	cmd                       *exec.Cmd
	log                       *os.File
}

var hc = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxIdleConns: 1024}}

func run(c config) (result, error) {
	var res result
	dir, err := os.MkdirTemp("", "dcounter-replication-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	key, err := exec.Command(c.bin, "keygen").Output()
	if err != nil {
		return res, fmt.Errorf("keygen: %w", err)
	}
	keyFile := filepath.Join(dir, "cluster.key")
	if err := os.WriteFile(keyFile, bytes.TrimSpace(key), 0o600); err != nil {
		return res, err
	}
	ns := make([]*node, c.nodes)
	defer func() {
		for _, n := range ns {
			if n != nil && n.cmd != nil && n.cmd.Process != nil {
				n.cmd.Process.Signal(syscall.SIGKILL)
				n.cmd.Wait()
				n.log.Close()
			}
		}
	}()
	for i := range ns {
		n := &node{name: fmt.Sprintf("n%d", i+1), gossip: freeAddr(), http: freeAddr()}
		args := []string{"node", "--name", n.name, "--gossip-addr", n.gossip, "--http-addr", n.http,
			"--data-dir", filepath.Join(dir, n.name), "--cluster-key-file", keyFile, "--log-level", "warn"}
		if c.debug {
			n.debug = freeAddr()
			args = append(args, "--debug-addr", n.debug)
		}
		if i > 0 {
			args = append(args, "--join", ns[0].gossip)
		}
		args = append(args, c.extra...)
		n.log, err = os.Create(filepath.Join(dir, n.name+".log"))
		if err != nil {
			return res, err
		}
		n.cmd = exec.Command(c.bin, args...)
		n.cmd.Env = append(cleanEnv(), c.env...)
		n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
		if err := n.cmd.Start(); err != nil {
			return res, err
		}
		ns[i] = n
		if err := testutil.Poll(20*time.Second, func() error { return healthy(n) }); err != nil {
			return res, fmt.Errorf("%s: %w\n%s", n.name, err, tail(n.log.Name()))
		}
	}
	for _, n := range ns {
		if err := testutil.Poll(30*time.Second, func() error { return members(n, c.nodes) }); err != nil {
			return res, fmt.Errorf("%s: %w", n.name, err)
		}
	}
	if c.debug {
		for _, n := range ns {
			fmt.Fprintf(os.Stderr, "%s pprof: http://%s/debug/pprof/\n", n.name, n.debug)
		}
	}
	// Let joining settle (member gossip, the first sync rounds) before
	// measuring the idle rate.
	time.Sleep(time.Second)
	t0, cpu0 := time.Now(), clusterCPU(ns)
	time.Sleep(c.idle)
	idleRate := (clusterCPU(ns) - cpu0) / time.Since(t0).Seconds()

	b0, m0, f0, err := gossipOut(ns)
	if err != nil {
		return res, err
	}
	keyNames := make([]string, c.keys)
	for i := range keyNames {
		keyNames[i] = fmt.Sprintf("k%02d", i)
	}
	want := make([]atomic.Int64, c.keys)
	var next atomic.Int64
	var failed atomic.Value
	start, cpuStart, driverStart := time.Now(), clusterCPU(ns), selfCPU()
	var wg sync.WaitGroup
	for w := 0; w < c.clients; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			cl := client{conns: map[*node]*conn{}}
			defer cl.close()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for {
				i := next.Add(1) - 1
				if i >= int64(c.writes) {
					return
				}
				k := rng.IntN(c.keys)
				amt := int64(1 + rng.IntN(5))
				n := ns[int(i)%len(ns)]
				if err := cl.increment(n, keyNames[k], amt); err != nil {
					failed.Store(fmt.Errorf("%w\n%s log:\n%s", err, n.name, tail(n.log.Name())))
					return
				}
				want[k].Add(amt)
			}
		}(w)
	}
	wg.Wait()
	res.writeTime = time.Since(start)
	res.driverCPU = selfCPU() - driverStart
	if err, _ := failed.Load().(error); err != nil {
		return res, err
	}
	exact := make(map[string]int64, c.keys)
	for i, k := range keyNames {
		exact[k] = want[i].Load()
	}
	for _, n := range ns {
		if err := testutil.Poll(60*time.Second, func() error { return converged(n, exact) }); err != nil {
			return res, fmt.Errorf("%s did not converge: %w", n.name, err)
		}
	}
	res.runTime = time.Since(start)
	res.cpu = clusterCPU(ns) - cpuStart
	res.idleCPU = idleRate * res.runTime.Seconds()
	b1, m1, f1, err := gossipOut(ns)
	if err != nil {
		return res, err
	}
	res.bytesOut, res.msgsOut, res.fsyncs = b1-b0, m1-m0, f1-f0
	if c.debug {
		for _, n := range ns[:1] {
			b, _ := get(n, "/metrics")
			for _, line := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(line, "dcounter_gossip_") || strings.HasPrefix(line, "dcounter_merged") || strings.HasPrefix(line, "dcounter_wal_records") {
					fmt.Fprintf(os.Stderr, "%s %s\n", n.name, line)
				}
			}
		}
	}
	if c.hold > 0 {
		time.Sleep(c.hold)
	}
	return res, nil
}

func cleanEnv() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "DCOUNTER_") {
			env = append(env, e)
		}
	}
	return env
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func get(n *node, path string) ([]byte, error) {
	resp, err := hc.Get("http://" + n.http + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return b, nil
}

func healthy(n *node) error { _, err := get(n, "/health"); return err }

func members(n *node, want int) error {
	b, err := get(n, "/nodes")
	if err != nil {
		return err
	}
	var ms []struct {
		State string `json:"state"`
	}
	if err := json.Unmarshal(b, &ms); err != nil {
		return err
	}
	alive := 0
	for _, m := range ms {
		if m.State == "" || m.State == "alive" {
			alive++
		}
	}
	if alive != want {
		return fmt.Errorf("sees %d alive members of %d, want %d", alive, len(ms), want)
	}
	return nil
}

// client is one load-generating client: a kept-alive connection per node
// and requests written and responses read by hand, so that the driver's
// own CPU per write (≈ 50 µs through net/http's client, on the same cores
// as the nodes) stays small beside what it measures.
type client struct {
	conns map[*node]*conn
	req   []byte
}

type conn struct {
	c net.Conn
	r *bufio.Reader
}

func (cl *client) close() {
	for _, c := range cl.conns {
		c.c.Close()
	}
}

// increment sends one POST /counters/KEY/increment and reads its
// response. A failed write is an error, never retried: a retry could count
// twice and the run checks exact totals.
func (cl *client) increment(n *node, key string, amount int64) error {
	c := cl.conns[n]
	if c == nil {
		nc, err := net.Dial("tcp", n.http)
		if err != nil {
			return err
		}
		c = &conn{c: nc, r: bufio.NewReader(nc)}
		cl.conns[n] = c
	}
	body := strconv.AppendInt([]byte(`{"amount":`), amount, 10)
	body = append(body, '}')
	cl.req = fmt.Appendf(cl.req[:0], "POST /counters/%s/increment HTTP/1.1\r\nHost: %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", key, n.http, len(body), body)
	if _, err := c.c.Write(cl.req); err != nil {
		return err
	}
	status, err := c.r.ReadSlice('\n')
	if err != nil {
		return fmt.Errorf("write to %s: %w", n.name, err)
	}
	if !bytes.HasPrefix(status, []byte("HTTP/1.1 200 ")) {
		return fmt.Errorf("write to %s: %s", n.name, bytes.TrimSpace(status))
	}
	length := -1
	for {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			return fmt.Errorf("write to %s: %w", n.name, err)
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			break
		}
		if name, val, ok := bytes.Cut(line, []byte(":")); ok && strings.EqualFold(string(name), "Content-Length") {
			length, err = strconv.Atoi(string(bytes.TrimSpace(val)))
			if err != nil {
				return fmt.Errorf("write to %s: Content-Length %q", n.name, val)
			}
		}
	}
	if length < 0 {
		return fmt.Errorf("write to %s: a response without Content-Length", n.name)
	}
	_, err = c.r.Discard(length)
	return err
}

func converged(n *node, want map[string]int64) error {
	b, err := get(n, "/counters?limit=1000")
	if err != nil {
		return err
	}
	var l struct {
		Items []struct {
			Key   string `json:"key"`
			Value int64  `json:"value"`
		} `json:"items"`
	}
	if err := json.Unmarshal(b, &l); err != nil {
		return err
	}
	got := make(map[string]int64, len(l.Items))
	for _, it := range l.Items {
		got[it.Key] = it.Value
	}
	for k, v := range want {
		if got[k] != v {
			return fmt.Errorf("%s: %s = %d, want %d", n.name, k, got[k], v)
		}
	}
	return nil
}

// clusterCPU is the CPU time (user + system) the node processes have used,
// in seconds.
func clusterCPU(ns []*node) float64 {
	var ticks int64
	for _, n := range ns {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", n.cmd.Process.Pid))
		if err != nil {
			panic(err)
		}
		// Fields after the command name (which may hold spaces) start at
		// field 3; utime and stime are fields 14 and 15.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + s
	}
	return float64(ticks) / clkTck
}

// selfCPU is this process's CPU time in seconds: the load generator's own
// share of the machine.
func selfCPU() float64 {
	d, err := testutil.ProcessCPU()
	if err != nil {
		panic(err)
	}
	return d.Seconds()
}

// clkTck is USER_HZ, 100 on every Linux architecture Go supports.
const clkTck = 100

// gossipOut sums the nodes' dcounter_gossip_bytes_total and
// dcounter_gossip_messages_total with direction="out".
func gossipOut(ns []*node) (bytesOut, msgsOut, fsyncs int64, err error) {
	for _, n := range ns {
		b, err := get(n, "/metrics")
		if err != nil {
			return 0, 0, 0, err
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			line := sc.Text()
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			if strings.HasPrefix(line, "dcounter_wal_fsync_duration_seconds_count") {
				fsyncs += int64(v)
			}
			if !strings.Contains(line, `direction="out"`) {
				continue
			}
			switch {
			case strings.HasPrefix(line, "dcounter_gossip_bytes_total{"):
				bytesOut += int64(v)
			case strings.HasPrefix(line, "dcounter_gossip_messages_total{"):
				msgsOut += int64(v)
			}
		}
	}
	return bytesOut, msgsOut, fsyncs, nil
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}
