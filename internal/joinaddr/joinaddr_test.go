package joinaddr

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/joinaddr/joinaddrtest"
)

var _ Resolver = (*joinaddrtest.Resolver)(nil)

func TestParse(t *testing.T) {
	good := map[string]Target{
		"10.0.0.1:7946":            {Kind: Static, Host: "10.0.0.1", Port: "7946"},
		"node-1.example:7946":      {Kind: Static, Host: "node-1.example", Port: "7946"},
		"[::1]:7946":               {Kind: Static, Host: "::1", Port: "7946"},
		"dns+dcounter.ns.svc:7946": {Kind: DNS, Host: "dcounter.ns.svc", Port: "7946"},
		"dns+[fd00::1]:7946":       {Kind: DNS, Host: "fd00::1", Port: "7946"},
		"dnssrv+_gossip._tcp.dcounter-gossip.ns.svc.cluster.local": {Kind: SRV, Host: "_gossip._tcp.dcounter-gossip.ns.svc.cluster.local"},
		"dnssrv+_gossip._tcp.x.":                                   {Kind: SRV, Host: "_gossip._tcp.x"},
	}
	for spec, want := range good {
		got, err := ParseOne(spec)
		want.Spec = spec
		if err != nil || got != want {
			t.Errorf("ParseOne(%q) = %+v, %v; want %+v", spec, got, err, want)
		}
	}
	bad := []string{
		"", "nohost", "dns+", "dns+name", "dns+name:", "dns+name:0", "dns+name:99999", "dns+:7946",
		"dnssrv+", "dnssrv+name:7946", "dnssrv+bad..name", "dns+bad name:1", "http://host:8080",
		"dnsx+name:7946", "host:port", ":7946", "dnssrv+" + strings.Repeat("a", 64) + ".x",
	}
	for _, spec := range bad {
		_, err := ParseOne(spec)
		var e *Error
		if !errors.Is(err, ErrSpec) || !errors.As(err, &e) || e.Spec != spec || !strings.Contains(err.Error(), spec) {
			t.Errorf("ParseOne(%q): err %v, want ErrSpec naming the spec", spec, err)
		}
	}
}

func TestParseListNamesEveryBadSpec(t *testing.T) {
	ts, err := Parse("10.0.0.1:7946, dns+a.svc:7946,,dnssrv+_g._tcp.a.svc,dns+bad,oops")
	if len(ts) != 3 {
		t.Fatalf("got %d targets, want the 3 good ones", len(ts))
	}
	if !errors.Is(err, ErrSpec) || !strings.Contains(err.Error(), `"dns+bad"`) || !strings.Contains(err.Error(), `"oops"`) {
		t.Fatalf("err = %v, want both bad specs named", err)
	}
	if !HasDynamic(ts) || HasDynamic(ts[:1]) {
		t.Fatal("HasDynamic wrong")
	}
}

func TestResolveMixedDeduped(t *testing.T) {
	r := &joinaddrtest.Resolver{}
	r.SetHost("dcounter.svc", "10.0.0.1", "10.0.0.2", "fd00::3")
	r.SetHost("pod-0.dcounter", "10.0.0.1")
	r.SetHost("pod-4.dcounter", "10.0.0.5")
	r.SetSRV("_gossip._tcp.dcounter.svc",
		&net.SRV{Target: "pod-0.dcounter.", Port: 7946},
		&net.SRV{Target: "pod-4.dcounter.", Port: 7000},
		&net.SRV{Target: "10.0.0.9", Port: 7946}, // an address as target
	)
	ts, err := Parse("10.0.0.1:7946,dns+dcounter.svc:7946,dnssrv+_gossip._tcp.dcounter.svc,10.0.0.2:7946")
	if err != nil {
		t.Fatal(err)
	}
	got, err := Resolve(context.Background(), r, ts)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.1:7946", "10.0.0.2:7946", "[fd00::3]:7946", "10.0.0.5:7000", "10.0.0.9:7946"}
	if !slices.Equal(got, want) {
		t.Fatalf("Resolve = %v, want %v", got, want)
	}
}

func TestResolvePartialFailure(t *testing.T) {
	r := &joinaddrtest.Resolver{}
	r.SetHost("up.svc", "10.0.0.1")
	r.SetSRV("_g._tcp.dangling", &net.SRV{Target: "gone.svc.", Port: 1})
	r.SetSRV("_g._tcp.empty")
	ts, _ := Parse("dns+up.svc:7946,dns+down.svc:7946,dnssrv+_g._tcp.dangling,dnssrv+_g._tcp.empty,dnssrv+_g._tcp.none,10.0.0.7:1")
	got, err := Resolve(context.Background(), r, ts)
	if !slices.Equal(got, []string{"10.0.0.1:7946", "10.0.0.7:1"}) {
		t.Fatalf("addresses = %v", got)
	}
	fs := Failures(err)
	var specs []string
	for _, f := range fs {
		if !errors.Is(f, ErrResolve) {
			t.Errorf("%v is not ErrResolve", f)
		}
		specs = append(specs, f.Spec)
	}
	want := []string{"dns+down.svc:7946", "dnssrv+_g._tcp.dangling", "dnssrv+_g._tcp.empty", "dnssrv+_g._tcp.none"}
	if !slices.Equal(specs, want) {
		t.Fatalf("failed specs = %v, want %v", specs, want)
	}
	if !errors.Is(err, ErrResolve) {
		t.Fatalf("err %v is not ErrResolve", err)
	}
}

func TestResolveSeesLaterRecords(t *testing.T) {
	r := &joinaddrtest.Resolver{}
	r.SetHost("svc", "10.0.0.1")
	ts, _ := Parse("dns+svc:7946")
	got, _ := Resolve(context.Background(), r, ts)
	if !slices.Equal(got, []string{"10.0.0.1:7946"}) {
		t.Fatal(got)
	}
	r.SetHost("svc", "10.0.0.1", "10.0.0.2")
	got, _ = Resolve(context.Background(), r, ts)
	if !slices.Equal(got, []string{"10.0.0.1:7946", "10.0.0.2:7946"}) {
		t.Fatalf("after adding a record: %v", got)
	}
}

func TestStaticNeedsNoResolver(t *testing.T) {
	r := &joinaddrtest.Resolver{}
	ts, _ := Parse("node-1.example:7946,10.0.0.1:7946")
	got, err := Resolve(context.Background(), r, ts)
	if err != nil || !slices.Equal(got, []string{"node-1.example:7946", "10.0.0.1:7946"}) || r.Calls() != 0 {
		t.Fatalf("got %v, %v after %d lookups: host:port must pass through untouched", got, err, r.Calls())
	}
}

func TestLogLimiter(t *testing.T) {
	l := &LogLimiter{Every: time.Minute}
	t0 := time.Unix(1_700_000_000, 0)
	if !l.Allow("a", t0) || l.Allow("a", t0.Add(59*time.Second)) || !l.Allow("b", t0.Add(time.Second)) {
		t.Fatal("first message per key must pass, a repeat within a minute must not")
	}
	if !l.Allow("a", t0.Add(time.Minute)) {
		t.Fatal("a minute later it must pass again")
	}
	l.Forget("a")
	if !l.Allow("a", t0.Add(61*time.Second)) {
		t.Fatal("after Forget it must pass")
	}
}

func FuzzParseOne(f *testing.F) {
	for _, s := range []string{"dns+a:1", "dnssrv+_a._tcp.b", "h:1", "[::1]:2", "dns+[::1]:3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := ParseOne(s)
		if err == nil && tg.Kind != SRV && tg.Port == "" {
			t.Fatalf("%q parsed without a port", s)
		}
	})
}
