package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// netlab is a set of network namespaces, one per node, on one bridge: real
// separate network stacks whose links the test cuts with iptables inside
// each namespace. The bridge lives in a namespace of its own (the switch),
// so the host's firewall (Docker's FORWARD policy, say) never sees the
// bridged traffic; the test reaches the nodes through one more veth from
// the root namespace. It needs root, ip(8) and iptables(8); CI runs as root
// and .ci/run installs them.
type netlab struct {
	t      *testing.T
	id     string
	sw     string // the switch namespace, holding the bridge
	subnet string // e.g. 10.199.37
	ns     []string
	ips    []string
}

func newNetlab(t *testing.T, n int) *netlab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("partition tests need root to create network namespaces (CI runs them as root)")
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("partition tests need %s (apt-get install iproute2 iptables; .ci/run does)", tool)
		}
	}
	b := make([]byte, 3)
	rand.Read(b)
	third, _ := rand.Int(rand.Reader, big.NewInt(250))
	l := &netlab{t: t, id: hex.EncodeToString(b), subnet: fmt.Sprintf("10.199.%d", third.Int64()+1)}
	l.sw = "dc" + l.id + "-sw"
	t.Cleanup(l.destroy)
	l.run("ip", "netns", "add", l.sw)
	l.run("ip", "netns", "exec", l.sw, "ip", "link", "add", "br0", "type", "bridge")
	l.run("ip", "netns", "exec", l.sw, "ip", "link", "set", "br0", "up")
	// The root namespace's port on the switch, for the test's HTTP calls.
	host := "dh" + l.id
	l.run("ip", "link", "add", host, "type", "veth", "peer", "name", "up0", "netns", l.sw)
	l.run("ip", "addr", "add", l.subnet+".1/24", "dev", host)
	l.run("ip", "link", "set", host, "up")
	l.run("ip", "netns", "exec", l.sw, "ip", "link", "set", "up0", "master", "br0", "up")
	for i := 0; i < n; i++ {
		ns := fmt.Sprintf("dc%s-%d", l.id, i)
		port := fmt.Sprintf("p%d", i)
		ip := fmt.Sprintf("%s.%d", l.subnet, 10+i)
		l.run("ip", "netns", "add", ns)
		l.ns = append(l.ns, ns)
		l.run("ip", "netns", "exec", l.sw, "ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
		l.run("ip", "netns", "exec", l.sw, "ip", "link", "set", port, "master", "br0", "up")
		l.run("ip", "netns", "exec", ns, "ip", "addr", "add", ip+"/24", "dev", "eth0")
		l.run("ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up")
		l.run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
		l.ips = append(l.ips, ip)
	}
	return l
}

func (l *netlab) run(args ...string) {
	l.t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		l.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (l *netlab) destroy() {
	for _, ns := range append(l.ns, l.sw) {
		exec.Command("ip", "netns", "del", ns).Run() // also removes its veth pairs
	}
	exec.Command("ip", "link", "del", "dh"+l.id).Run()
}

// labKey seals the lab's gossip: nodes on non-loopback addresses refuse to
// run unauthenticated gossip, so the partition tests exercise encryption too.
const labKey = "ZGNvdW50ZXItcGFydGl0aW9uLXRlc3QtY2x1c3Rlci0="

// node starts a dcounter node inside namespace i.
func (l *netlab) node(i int, join string, extra ...string) *proc {
	// The lab's client API is open (the partition tests are not about
	// clients); off loopback that takes --insecure-api.
	extra = append([]string{"--cluster-key", labKey, "--insecure-api"}, extra...)
	p := &proc{
		t: l.t, name: fmt.Sprintf("n%d", i+1),
		Gossip: l.ips[i] + ":7946", HTTP: "http://" + l.ips[i] + ":8080",
		wrap: []string{"ip", "netns", "exec", l.ns[i]},
	}
	return p.startAsNode(join, extra...)
}

// partition cuts every link between a node in a and a node in b, both ways.
func (l *netlab) partition(a, b []int) {
	for _, i := range a {
		for _, j := range b {
			for _, pair := range [][2]int{{i, j}, {j, i}} {
				ns, peer := l.ns[pair[0]], l.ips[pair[1]]
				l.run("ip", "netns", "exec", ns, "iptables", "-A", "INPUT", "-s", peer, "-j", "DROP")
				l.run("ip", "netns", "exec", ns, "iptables", "-A", "OUTPUT", "-d", peer, "-j", "DROP")
			}
		}
	}
}

// cutOneWay drops what from sends to to (to still reaches from).
func (l *netlab) cutOneWay(from, to int) {
	l.run("ip", "netns", "exec", l.ns[from], "iptables", "-A", "OUTPUT", "-d", l.ips[to], "-j", "DROP")
}

// heal removes every cut.
func (l *netlab) heal() {
	for _, ns := range l.ns {
		l.run("ip", "netns", "exec", ns, "iptables", "-F")
	}
}
