package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/clusterkey"
)

// setFlag replaces the value of flag in p's arguments (appending it if absent).
func (p *proc) setFlag(flag, value string) {
	for i := 0; i+1 < len(p.args); i++ {
		if p.args[i] == flag {
			p.args[i+1] = value
			return
		}
	}
	p.args = append(p.args, flag, value)
}

// deadWatch polls every node's /nodes and remembers any member any node
// ever reported dead.
type deadWatch struct {
	mu    sync.Mutex
	seen  []string
	polls int
}

func (w *deadWatch) run(ctx context.Context, nodes []*proc) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			for _, p := range nodes {
				b, err := p.get("/nodes")
				if err != nil {
					continue // restarting
				}
				var ms []struct{ Name, Status string }
				if json.Unmarshal(b, &ms) != nil {
					continue
				}
				w.mu.Lock()
				w.polls++
				for _, m := range ms {
					if m.Status == "dead" {
						w.seen = append(w.seen, fmt.Sprintf("%s saw %s dead at %s", p.name, m.Name, time.Now().Format("15:04:05.000")))
					}
				}
				w.mu.Unlock()
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return &wg
}

// agreedValues waits until every node reports the same value for every
// key, and returns those values.
func agreedValues(t *testing.T, nodes []*proc, keys []string, within time.Duration) map[string]int64 {
	t.Helper()
	var final map[string]int64
	waitFor(t, within, func() error {
		final = nil
		for _, p := range nodes {
			v := map[string]int64{}
			for _, k := range keys {
				x, err := p.value(k)
				if err != nil {
					return err
				}
				v[k] = x
			}
			if final == nil {
				final = v
				continue
			}
			for _, k := range keys {
				if v[k] != final[k] {
					return fmt.Errorf("%s: %s = %d, %s has %d", p.name, k, v[k], nodes[0].name, final[k])
				}
			}
		}
		return nil
	}, true)
	return final
}

// keyRefusalPhrases are what a node, discovery server or gateway logs when
// it refuses (or cannot authenticate) a peer for its cluster key.
var keyRefusalPhrases = []string{
	"keyring",                       // gossip: the dialer's key is not ours
	"has none",                      // gossip: one side keyless
	"did not authenticate",          // gossip handshake, discovery client
	"forwarded identity ignored",    // node: a gateway's signature did not verify
	"requests refused",              // discovery server: unauthenticated requests
	"refused our MAC",               // discovery client: the server lacks our key
	"not signed with our key",       // discovery client: the answer's MAC
	"does not verify with our keys", // gateway: a node's membership proof
	"not a proven member",           // gateway: a node out of rotation for its proof
}

// keyRefusals returns the lines of p's log that report a key refusal.
func keyRefusals(p *proc) []string {
	var out []string
	for _, line := range strings.Split(p.log.String(), "\n") {
		for _, bad := range keyRefusalPhrases {
			if strings.Contains(line, bad) {
				out = append(out, line)
				break
			}
		}
	}
	return out
}

// TestKeyRotationUnderLoad rotates a 5-node cluster from key A to key B by
// rolling restarts through the three documented steps (add B everywhere,
// make B primary everywhere, remove A), under continuous writes: no
// acknowledged write is lost, every node ends exact, no node ever reports
// a member dead, and no connection is refused for its key.
func TestKeyRotationUnderLoad(t *testing.T) {
	keyA, keyB := clusterkey.Generate(), clusterkey.Generate()
	nodes := startCluster(t, 5, "--cluster-key", keyA)
	for i, p := range nodes { // on restart everyone joins through a neighbour
		p.setFlag("--join", nodes[(i+1)%len(nodes)].Gossip)
	}
	keys := []string{"a", "b", "c", "default"}
	l := newLedger()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	load := load(ctx, nodes, keys, l, 8)
	var watch deadWatch
	watching := watch.run(ctx, nodes)

	var refusals []string // every run's log is checked, not only the last
	for _, step := range []struct{ name, ring string }{
		{"add B", keyA + "," + keyB},
		{"make B primary", keyB + "," + keyA},
		{"remove A", keyB},
	} {
		for _, p := range nodes {
			p.stop(t)
			for _, bad := range keyRefusals(p) {
				refusals = append(refusals, p.name+": "+bad)
			}
			p.setFlag("--cluster-key", step.ring)
			p.start()
			for _, o := range nodes {
				waitFor(t, 15*time.Second, func() error { return everyoneSees([]*proc{o}, p.name, "alive") }, true)
			}
		}
		t.Logf("%s: done on all nodes", step.name)
	}
	// Writes keep flowing on the rotated cluster.
	ackedBefore := l.total()
	waitFor(t, 10*time.Second, func() error {
		if n := l.total() - ackedBefore; n < 100 {
			return fmt.Errorf("%d writes acknowledged since the rotation", n)
		}
		return nil
	}, true)
	cancel()
	load.Wait()
	watching.Wait()

	final := agreedValues(t, nodes, keys, 10*time.Second)
	l.check(t, final)
	var total int64
	for _, v := range final {
		total += v
	}
	if total == 0 {
		t.Fatal("no write was acknowledged: the test exercised nothing")
	}
	if len(watch.seen) != 0 {
		t.Errorf("members reported dead during the rotation:\n%s", strings.Join(watch.seen, "\n"))
	}
	for _, p := range nodes {
		for _, bad := range keyRefusals(p) {
			refusals = append(refusals, p.name+": "+bad)
		}
	}
	if len(refusals) != 0 {
		t.Errorf("key refusals logged during the rotation:\n%s", strings.Join(refusals, "\n"))
	}
	t.Logf("15 rolling restarts; %d acknowledged in total, none lost; %d /nodes polls, no member dead", total, watch.polls)
}

// recordingProxy forwards TCP connections to target and records, per
// connection, every byte the client sent.
type recordingProxy struct {
	ln      net.Listener
	target  string
	mu      sync.Mutex
	streams []*bytes.Buffer
	wg      sync.WaitGroup
}

func startProxy(t *testing.T, target string) *recordingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &recordingProxy{ln: ln, target: target}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			rec := &bytes.Buffer{}
			p.mu.Lock()
			p.streams = append(p.streams, rec)
			p.mu.Unlock()
			p.wg.Add(2)
			go func() {
				defer p.wg.Done()
				io.Copy(io.MultiWriter(s, &lockedWriter{&p.mu, rec}), c)
				s.Close()
			}()
			go func() {
				defer p.wg.Done()
				io.Copy(c, s)
				c.Close()
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return p
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func (p *recordingProxy) recorded() [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out [][]byte
	for _, s := range p.streams {
		out = append(out, bytes.Clone(s.Bytes()))
	}
	return out
}

// metric reads one unlabelled counter from p's /metrics.
func metric(p *proc, name string) (float64, error) {
	b, err := p.get("/metrics")
	if err != nil {
		return 0, err
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		return 0, fmt.Errorf("%s not in /metrics", name)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

// TestReplayedGossipIsRefused records the gossip a keyed cluster sends
// through a proxy, rebuilds the cluster from scratch with the same key and
// name, and replays the recorded streams verbatim into it: every replay is
// refused at the handshake and nothing changes.
func TestReplayedGossipIsRefused(t *testing.T) {
	key := clusterkey.Generate()
	common := []string{"--cluster-key", key, "--cluster", "replayed"}

	// n2 advertises the proxy, so everything n1 sends it is recorded.
	n1 := startNode(t, "n1", "", common...)
	n2 := &proc{t: t, name: "n2", Gossip: fmt.Sprintf("127.0.0.1:%d", freePort(t)), HTTP: fmt.Sprintf("http://127.0.0.1:%d", freePort(t))}
	proxy := startProxy(t, n2.Gossip)
	n2.startAsNode(n1.Gossip, append([]string{"--advertise-addr", proxy.ln.Addr().String()}, common...)...)
	for _, p := range []*proc{n1, n2} {
		waitFor(t, 10*time.Second, func() error { return memberCount(p, 2) }, true)
	}
	for i := range 20 {
		if err := n1.add(context.Background(), "stolen", int64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, func() error { return expectValue(n2, "stolen", 210) }, true)
	n1.stop(t)
	n2.stop(t)
	streams := proxy.recorded()
	var longest int
	for _, s := range streams {
		longest = max(longest, len(s))
	}
	// n2 can only have learned "stolen" through the proxy (n1 sends
	// everything, repairs included, to n2's advertised address), so the
	// streams hold the writes; a stream no longer than a keyed handshake
	// from the dialer (about 120 bytes) would mean the recording broke.
	if len(streams) == 0 || longest < 200 {
		t.Fatalf("recorded %d streams, longest %d bytes: nothing worth replaying", len(streams), longest)
	}

	// A new cluster, same key and name, empty data dirs.
	m1 := startNode(t, "m1", "", common...)
	m2 := startNode(t, "m2", m1.Gossip, common...)
	for _, p := range []*proc{m1, m2} {
		waitFor(t, 10*time.Second, func() error { return memberCount(p, 2) }, true)
	}
	before, err := metric(m2, `dcounter_transport_rejected_total{reason="auth"}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range streams {
		c, err := net.Dial("tcp", m2.Gossip)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(s) // the node may close the connection before reading it all
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		io.Copy(io.Discard, c) // until the node hangs up
		c.Close()
	}
	waitFor(t, 10*time.Second, func() error {
		after, err := metric(m2, `dcounter_transport_rejected_total{reason="auth"}`)
		if err != nil {
			return err
		}
		if after-before < float64(len(streams)) {
			return fmt.Errorf("%v of %d replays rejected", after-before, len(streams))
		}
		return nil
	}, true)
	if got := strings.Count(m2.log.String(), "replayed or tampered"); got < len(streams) {
		t.Errorf("m2 logged %d replay refusals for %d replays", got, len(streams))
	}
	// A barrier: a write at m2 that m1 sees went out after anything the
	// replays could have merged into m2.
	if err := m2.add(context.Background(), "barrier", 1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() error { return expectValue(m1, "barrier", 1) }, true)
	for _, p := range []*proc{m1, m2} {
		if err := expectValue(p, "stolen", 0); err != nil {
			t.Error(err)
		}
		if err := memberCount(p, 2); err != nil {
			t.Error(err)
		}
	}
	t.Logf("%d recorded streams (longest %d bytes) replayed into the rebuilt cluster: all refused", len(streams), longest)
}

// total is the sum of acknowledged amounts.
func (l *ledger) total() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var n int64
	for _, v := range l.acked {
		n += v
	}
	return n
}
