// Package joinaddr turns join specs into addresses to dial. A spec is one of
//
//	host:port           used as given (a host name is left to the dialer)
//	dns+host:port       every A and AAAA record of host, with port
//	dnssrv+name         the SRV records of name (e.g. _gossip._tcp.svc.ns.svc.cluster.local):
//	                    every address of each target, with that record's port
//
// as Consul and dskit's memberlist join take them, so that a Kubernetes
// headless Service (one A record per pod) names the whole cluster.
//
// Invariants: Resolve returns each address once, in the order the specs and
// records gave them; a name that fails does not hide the addresses of the
// others (Resolve returns both). Parsing and resolving never panic on what a
// user or a DNS server sent.
package joinaddr

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Errors. ErrSpec is a spec that cannot be parsed; ErrResolve a name that did
// not resolve (no records, or the lookup failed). Both are wrapped in an
// *Error naming the spec.
var (
	ErrSpec    = errors.New("joinaddr: bad join address")
	ErrResolve = errors.New("joinaddr: cannot resolve")
)

// Prefixes of the DNS forms.
const (
	PrefixDNS    = "dns+"
	PrefixDNSSRV = "dnssrv+"
)

// Kind says how a Target turns into addresses.
type Kind uint8

const (
	// Static is a host:port used as given.
	Static Kind = iota
	// DNS is a host whose A and AAAA records are each joined with Port.
	DNS
	// SRV is a name whose SRV records give targets and ports.
	SRV
)

// Target is one parsed spec.
type Target struct {
	Spec string // as given, for messages and rate-limited logging
	Kind Kind
	// Host is the host of Static and DNS, the SRV name of SRV.
	Host string
	// Port is the port of Static and DNS; empty for SRV.
	Port string
}

// Addr is a Static target's address.
func (t Target) Addr() string { return net.JoinHostPort(t.Host, t.Port) }

// Dynamic reports whether the target depends on DNS (and is worth
// re-resolving).
func (t Target) Dynamic() bool { return t.Kind != Static }

// Error is a failure tied to one spec.
type Error struct {
	Spec string
	Err  error
}

func (e *Error) Error() string { return fmt.Sprintf("%q: %v", e.Spec, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// Parse parses a comma-separated list of specs (empty items are skipped).
func Parse(specs string) ([]Target, error) {
	return ParseList(strings.Split(specs, ","))
}

// ParseList parses each spec; the error names every bad one.
func ParseList(specs []string) ([]Target, error) {
	var out []Target
	var errs []error
	for _, s := range specs {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		t, err := ParseOne(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, t)
	}
	return out, errors.Join(errs...)
}

// ParseOne parses one spec.
func ParseOne(spec string) (Target, error) {
	bad := func(why string) (Target, error) {
		return Target{}, &Error{Spec: spec, Err: fmt.Errorf("%w: %s", ErrSpec, why)}
	}
	switch {
	case strings.HasPrefix(spec, PrefixDNSSRV):
		name := strings.TrimSuffix(spec[len(PrefixDNSSRV):], ".")
		if name == "" {
			return bad("want dnssrv+name, e.g. dnssrv+_gossip._tcp.dcounter.ns.svc.cluster.local")
		}
		if strings.Contains(name, ":") {
			return bad("an SRV name takes no port (the records give it)")
		}
		if !validName(name) {
			return bad("not a DNS name")
		}
		return Target{Spec: spec, Kind: SRV, Host: name}, nil
	case strings.HasPrefix(spec, PrefixDNS):
		host, port, err := splitHostPort(spec[len(PrefixDNS):])
		if err != nil {
			return bad("want dns+host:port: " + err.Error())
		}
		if net.ParseIP(host) == nil && !validName(host) {
			return bad("not a DNS name")
		}
		return Target{Spec: spec, Kind: DNS, Host: host, Port: port}, nil
	case strings.Contains(spec, "://"):
		return bad("want host:port, dns+host:port or dnssrv+name, not a URL")
	}
	host, port, err := splitHostPort(spec)
	if err != nil {
		return bad("want host:port, dns+host:port or dnssrv+name: " + err.Error())
	}
	if strings.Contains(host, "+") {
		return bad("unknown prefix: want dns+ or dnssrv+")
	}
	return Target{Spec: spec, Kind: Static, Host: host, Port: port}, nil
}

func splitHostPort(s string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(s)
	if err != nil {
		return "", "", errors.New("missing or malformed port")
	}
	if host == "" {
		return "", "", errors.New("missing host")
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return "", "", fmt.Errorf("bad port %q", port)
	}
	return host, port, nil
}

// validName accepts what a resolver can look up: letters, digits, '-', '_'
// (SRV labels) and dots, no empty label, at most 253 bytes.
func validName(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if len(label) == 0 || len(label) > 63 {
			return false
		}
		for _, c := range []byte(label) {
			switch {
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
			default:
				return false
			}
		}
	}
	return true
}

// Resolver is the part of *net.Resolver that Resolve uses; tests fake it.
type Resolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)
}

var _ Resolver = (*net.Resolver)(nil)

// Resolve returns the addresses of every target, deduplicated, in order. A
// target that does not resolve (lookup error, or no records) adds an *Error
// wrapping ErrResolve to the returned error, which joins one per failed
// target; the addresses of the others are returned all the same. A nil
// resolver means net.DefaultResolver.
func Resolve(ctx context.Context, r Resolver, targets []Target) ([]string, error) {
	if r == nil {
		r = net.DefaultResolver
	}
	var out []string
	seen := map[string]bool{}
	add := func(a string) {
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	var errs []error
	fail := func(t Target, err error) {
		errs = append(errs, &Error{Spec: t.Spec, Err: fmt.Errorf("%w: %v", ErrResolve, err)})
	}
	for _, t := range targets {
		switch t.Kind {
		case Static:
			add(t.Addr())
		case DNS:
			ips, err := lookupHost(ctx, r, t.Host)
			if err != nil {
				fail(t, err)
				continue
			}
			for _, ip := range ips {
				add(net.JoinHostPort(ip, t.Port))
			}
		case SRV:
			// The whole name is looked up: no _service._proto is added.
			_, srvs, err := r.LookupSRV(ctx, "", "", t.Host)
			if err == nil && len(srvs) == 0 {
				err = errors.New("no SRV records")
			}
			if err != nil {
				fail(t, err)
				continue
			}
			var got int
			var lastErr error
			for _, s := range srvs {
				if s == nil || s.Target == "" || s.Target == "." || s.Port == 0 {
					continue
				}
				ips, err := lookupHost(ctx, r, strings.TrimSuffix(s.Target, "."))
				if err != nil {
					lastErr = err
					continue
				}
				for _, ip := range ips {
					add(net.JoinHostPort(ip, strconv.Itoa(int(s.Port))))
					got++
				}
			}
			if got == 0 {
				if lastErr == nil {
					lastErr = errors.New("no usable SRV target")
				}
				fail(t, lastErr)
			}
		}
	}
	return out, errors.Join(errs...)
}

// lookupHost returns host's addresses as strings; an IP literal is itself.
func lookupHost(ctx context.Context, r Resolver, host string) ([]string, error) {
	if ip := net.ParseIP(host); ip != nil {
		return []string{ip.String()}, nil
	}
	addrs, err := r.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		if a.IP == nil {
			continue
		}
		s := a.IP.String()
		if a.Zone != "" {
			s += "%" + a.Zone
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, errors.New("no A or AAAA records")
	}
	return out, nil
}

// Failures returns the per-spec errors in an error Resolve returned.
func Failures(err error) []*Error {
	if err == nil {
		return nil
	}
	var out []*Error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = append(out, Failures(e)...)
		}
		return out
	}
	var e *Error
	if errors.As(err, &e) {
		out = append(out, e)
	}
	return out
}

// HasDynamic reports whether any target depends on DNS.
func HasDynamic(targets []Target) bool {
	for _, t := range targets {
		if t.Dynamic() {
			return true
		}
	}
	return false
}

// LogLimiter lets a message about a key through at most once per Every:
// a name that keeps failing to resolve is logged once a minute, not on
// every retry. The zero value is not usable; Every must be set.
type LogLimiter struct {
	Every time.Duration

	mu   sync.Mutex
	last map[string]time.Time
}

// DefaultLogEvery is how often a failing name is logged.
const DefaultLogEvery = time.Minute

// Allow reports whether a message about key may be logged at now.
func (l *LogLimiter) Allow(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last = map[string]time.Time{}
	}
	if t, ok := l.last[key]; ok && now.Sub(t) < l.Every {
		return false
	}
	l.last[key] = now
	return true
}

// Forget clears key, so that its next failure is logged at once (after it
// resolved again).
func (l *LogLimiter) Forget(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.last, key)
}
