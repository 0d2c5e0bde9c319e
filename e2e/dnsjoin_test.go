package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// labDNS is a real DNS server (dnsmasq) in a namespace of the lab, serving
// a headless-Service-like name: one A record per "pod" under dcounter.lab,
// a stable name per pod (pod-i.dcounter.lab), and SRV records
// _gossip._tcp.dcounter.lab pointing at every pod name (a pod that does
// not exist has no A record, and is skipped). Changing a record rewrites
// the hosts file and sends SIGHUP, as a Service's endpoints change.
type labDNS struct {
	t     *testing.T
	lab   *netlab
	ip    string
	hosts string
	cmd   *exec.Cmd
	pods  map[int]string // pod index → IP
	// unlisted pods have their pod-i name only, not yet the Service's.
	unlisted map[int]bool
}

const (
	labDNSName = "dcounter.lab"
	labSRVName = "_gossip._tcp.dcounter.lab"
	labPods    = 5
)

// newLabDNS runs dnsmasq in namespace ns of lab and makes it the resolver
// of every other namespace (ip netns exec bind-mounts
// /etc/netns/NAME/resolv.conf over /etc/resolv.conf).
func newLabDNS(t *testing.T, lab *netlab, ns int) *labDNS {
	t.Helper()
	bin, err := exec.LookPath("dnsmasq")
	if err != nil {
		t.Skip("the DNS join test needs dnsmasq (apt-get install dnsmasq-base; .ci/run does)")
	}
	d := &labDNS{t: t, lab: lab, ip: lab.ips[ns], hosts: filepath.Join(t.TempDir(), "hosts"), pods: map[int]string{}, unlisted: map[int]bool{}}
	d.write()
	args := []string{"ip", "netns", "exec", lab.ns[ns], bin, "--keep-in-foreground", "--conf-file=/dev/null",
		"--no-resolv", "--no-hosts", "--port=53", "--listen-address=" + d.ip, "--bind-interfaces",
		"--addn-hosts=" + d.hosts, "--local=/lab/", "--user=root", "--log-facility=-"}
	for i := 0; i < labPods; i++ {
		args = append(args, fmt.Sprintf("--srv-host=%s,pod-%d.%s,7946", labSRVName, i, labDNSName))
	}
	d.cmd = exec.Command(args[0], args[1:]...)
	out := &lockedBuffer{}
	d.cmd.Stdout, d.cmd.Stderr = out, out
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.cmd.Process.Kill()
		d.cmd.Wait()
		if t.Failed() {
			t.Logf("--- dnsmasq ---\n%s", out.String())
		}
	})
	for i, name := range lab.ns {
		if i == ns {
			continue
		}
		dir := filepath.Join("/etc/netns", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte("nameserver "+d.ip+"\noptions timeout:1 attempts:2\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A SIGHUP before dnsmasq set its handlers would kill it.
	d.waitResolves("ns."+labDNSName, d.ip)
	return d
}

// write renders the hosts file from pods.
func (d *labDNS) write() {
	var b strings.Builder
	fmt.Fprintf(&b, "%s ns.%s\n", d.ip, labDNSName) // answered once dnsmasq is up
	for i := 0; i < labPods; i++ {
		switch ip, ok := d.pods[i]; {
		case ok && d.unlisted[i]:
			fmt.Fprintf(&b, "%s pod-%d.%s\n", ip, i, labDNSName)
		case ok:
			fmt.Fprintf(&b, "%s %s pod-%d.%s\n", ip, labDNSName, i, labDNSName)
		}
	}
	if err := os.WriteFile(d.hosts, []byte(b.String()), 0o644); err != nil {
		d.t.Fatal(err)
	}
}

// setPod points pod i's records at ip and reloads dnsmasq.
func (d *labDNS) setPod(i int, ip string) {
	d.t.Helper()
	d.pods[i] = ip
	d.write()
	d.cmd.Process.Signal(syscall.SIGHUP)
	// dnsmasq reloads asynchronously: wait until it answers with ip.
	d.waitResolves(fmt.Sprintf("pod-%d.%s", i, labDNSName), ip)
}

// waitResolves waits until name resolves to ip from the first namespace.
func (d *labDNS) waitResolves(name, ip string) {
	d.t.Helper()
	waitFor(d.t, 5*time.Second, func() error {
		out, err := exec.Command("ip", "netns", "exec", d.lab.ns[0], "getent", "ahostsv4", name).CombinedOutput()
		if err != nil || !strings.Contains(string(out), ip) {
			return fmt.Errorf("%s does not resolve to %s yet: %v %s", name, ip, err, out)
		}
		return nil
	}, true)
}

// dnsNode starts a node named name in namespace ns of lab with dataDir,
// joining through join only.
func dnsNode(lab *netlab, ns int, name, dataDir, join string) *proc {
	p := &proc{
		t: lab.t, name: name, DataDir: dataDir,
		Gossip: lab.ips[ns] + ":7946", HTTP: "http://" + lab.ips[ns] + ":8080",
		wrap: []string{"ip", "netns", "exec", lab.ns[ns]},
	}
	p.args = []string{"node", "--name", name, "--gossip-addr", p.Gossip, "--http-addr", hostPort(p.HTTP),
		"--data-dir", dataDir, "--log-level", "debug", "--cluster-key", labKey, "--insecure-api",
		"--join", join, "--join-interval", "1s"}
	p.start()
	return p
}

// membersByStatus returns p's members as "name@gossip_addr" by status.
func membersByStatus(p *proc) (map[string][]string, error) {
	b, err := p.get("/nodes")
	if err != nil {
		return nil, err
	}
	var ms []struct {
		Name       string
		GossipAddr string `json:"gossip_addr"`
		Status     string
	}
	if err := json.Unmarshal(b, &ms); err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, m := range ms {
		out[m.Status] = append(out[m.Status], m.Name+"@"+m.GossipAddr)
	}
	for _, v := range out {
		slices.Sort(v)
	}
	return out, nil
}

// gatewayUses checks that the gateway's healthy nodes are exactly nodes.
func gatewayUses(gw *proc, nodes []*proc) error {
	b, err := gw.get("/nodes")
	if err != nil {
		return err
	}
	var ns []struct{ URL, Status string }
	if err := json.Unmarshal(b, &ns); err != nil {
		return err
	}
	var got, want []string
	for _, n := range ns {
		if n.Status == "healthy" {
			got = append(got, n.URL)
		}
	}
	for _, p := range nodes {
		want = append(want, p.HTTP)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		return fmt.Errorf("gateway: healthy %v, want %v", got, want)
	}
	return nil
}

// TestJoinThroughDNS runs nodes that find each other only through a real
// DNS server: A records (dns+) and SRV records (dnssrv+), in network
// namespaces, as pods behind a headless Service. Members are added by
// adding records; one pod is replaced with its data dir at a new address,
// another with an empty data dir (a new replica). After each step every
// node reports the exact totals written so far and the expected members,
// and a gateway given the same name (dns+http://) uses exactly the live
// nodes.
func TestJoinThroughDNS(t *testing.T) {
	// Namespaces 0-4: the pods; 5, 6: the replacements; 7: the DNS
	// server; 8: a gateway finding the nodes through the same name.
	lab := newNetlab(t, 9)
	dns := newLabDNS(t, lab, 7)
	joins := []string{
		"dns+" + labDNSName + ":7946",
		"dnssrv+" + labSRVName,
		"dnssrv+" + labSRVName + ",dns+" + labDNSName + ":7946",
		"dns+" + labDNSName + ":7946",
		"dnssrv+" + labSRVName,
	}
	dataDirs := make([]string, labPods)
	pods := make([]*proc, labPods)
	start := func(i, ns int) {
		t.Helper()
		dns.setPod(i, lab.ips[ns])
		pods[i] = dnsNode(lab, ns, fmt.Sprintf("pod-%d", i), dataDirs[i], joins[i])
	}
	for i := range dataDirs {
		dataDirs[i] = filepath.Join(t.TempDir(), fmt.Sprint(i))
	}

	expected := map[string]int64{}
	var gw *proc
	writeAll := func(round int) {
		t.Helper()
		for i, p := range pods {
			if p == nil {
				continue
			}
			key := fmt.Sprintf("k%d", (round+i)%4)
			delta := int64(round*10 + i + 1)
			if err := p.add(context.Background(), key, delta); err != nil {
				t.Fatal(err)
			}
			expected[key] += delta
		}
		if gw != nil {
			if err := gw.add(context.Background(), "through-gateway", int64(round)); err != nil {
				t.Fatal(err)
			}
			expected["through-gateway"] += int64(round)
		}
	}
	live := func() []*proc {
		var out []*proc
		for _, p := range pods {
			if p != nil {
				out = append(out, p)
			}
		}
		return out
	}
	// check waits until every live pod reports the exact totals and sees
	// alive exactly the live pods (and, as left or dead, exactly gone).
	check := func(step string, gone ...string) {
		t.Helper()
		var wantAlive []string
		for _, p := range live() {
			wantAlive = append(wantAlive, p.name+"@"+p.Gossip)
		}
		slices.Sort(wantAlive)
		began := time.Now()
		waitFor(t, 15*time.Second, func() error {
			if err := allExact(live(), expected); err != nil {
				return err
			}
			for _, p := range live() {
				ms, err := membersByStatus(p)
				if err != nil {
					return err
				}
				if !slices.Equal(ms["alive"], wantAlive) {
					return fmt.Errorf("%s: alive %v, want %v", p.name, ms["alive"], wantAlive)
				}
				others := append(slices.Clone(ms["left"]), ms["dead"]...)
				slices.Sort(others)
				if !slices.Equal(others, gone) || len(ms["suspect"]) > 0 {
					return fmt.Errorf("%s: left/dead %v, suspect %v; want left/dead %v", p.name, others, ms["suspect"], gone)
				}
			}
			return gatewayUses(gw, live())
		}, true)
		t.Logf("%s: exact and members as expected on all %d nodes after %v", step, len(live()), time.Since(began).Round(time.Millisecond))
	}

	// Three pods, started in order: the first finds only itself and starts
	// the cluster; the others find it through A or SRV records.
	for i := 0; i < 3; i++ {
		start(i, i)
	}
	gwAddr := lab.ips[8] + ":8000"
	gw = &proc{t: t, name: "gateway", HTTP: "http://" + gwAddr, wrap: []string{"ip", "netns", "exec", lab.ns[8]},
		args: []string{"gateway", "--http-addr", gwAddr, "--nodes", "dns+http://" + labDNSName + ":8080",
			"--resolve-interval", "1s", "--health-interval", "250ms", "--cluster-key", labKey, "--insecure-api", "--log-level", "debug"}}
	gw.start()
	writeAll(1)
	check("3 pods")

	// Two more, by adding their records.
	start(3, 3)
	// pod-4 joins only through its own name, and so starts a cluster of
	// its own, taking writes; once the Service's name lists it too, the
	// others' re-resolution (every --join-interval) finds it.
	dns.unlisted[4] = true
	dns.setPod(4, lab.ips[4])
	pods[4] = dnsNode(lab, 4, "pod-4", dataDirs[4], fmt.Sprintf("dns+pod-4.%s:7946", labDNSName))
	writeAll(2)
	if ms, err := membersByStatus(pods[4]); err != nil || len(ms["alive"]) != 1 {
		t.Fatalf("pod-4 alone should see only itself: %v %v", ms, err)
	}
	dns.unlisted[4] = false
	dns.setPod(4, lab.ips[4])
	check("5 pods, pod-4 found by re-resolution")

	// pod-1 is rescheduled: same data dir (same replica), new address.
	pods[1].stop(t)
	start(1, 5)
	writeAll(3)
	check("pod-1 at a new address with its data")

	// pod-2 is replaced by a new replica with an empty data dir at a new
	// address: its predecessor's counts stay, and it is remembered as gone.
	oldPod2 := pods[2].name + "@" + pods[2].Gossip
	pods[2].stop(t)
	dataDirs[2] = filepath.Join(t.TempDir(), "2-new")
	start(2, 6)
	writeAll(4)
	check("pod-2 replaced by a new replica", oldPod2)
}
