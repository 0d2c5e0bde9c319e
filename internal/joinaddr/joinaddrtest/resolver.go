// Package joinaddrtest has a DNS resolver for tests of names in --join and
// --nodes: it answers A/AAAA and SRV lookups from records the test sets and
// changes, so that tests see what a real DNS server's changing answers do
// without one.
package joinaddrtest

import (
	"context"
	"errors"
	"net"
	"sync"
)

// Resolver answers from records set with SetHost and SetSRV; a name it does
// not hold is "no such host". It is safe for concurrent use; the zero
// value holds no records.
type Resolver struct {
	mu    sync.Mutex
	hosts map[string][]string
	srv   map[string][]*net.SRV
	calls int
}

// SetHost makes host resolve to ips (addresses as text); with none, host
// does not resolve.
func (r *Resolver) SetHost(host string, ips ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.hosts == nil {
		r.hosts = map[string][]string{}
	}
	if len(ips) == 0 {
		delete(r.hosts, host)
		return
	}
	r.hosts[host] = ips
}

// SetSRV sets the SRV records of the full name; with none, name exists
// with no records (an empty answer, not "no such host").
func (r *Resolver) SetSRV(name string, recs ...*net.SRV) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.srv == nil {
		r.srv = map[string][]*net.SRV{}
	}
	r.srv[name] = recs
}

// Calls counts the lookups made so far.
func (r *Resolver) Calls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

// LookupIPAddr answers host's records.
func (r *Resolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	ips, ok := r.hosts[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	out := make([]net.IPAddr, 0, len(ips))
	for _, s := range ips {
		out = append(out, net.IPAddr{IP: net.ParseIP(s)})
	}
	return out, nil
}

// LookupSRV answers the SRV records of a full name (service and proto
// must be empty, as joinaddr asks).
func (r *Resolver) LookupSRV(_ context.Context, service, proto, name string) (string, []*net.SRV, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if service != "" || proto != "" {
		return "", nil, errors.New("joinaddrtest: want the full name")
	}
	recs, ok := r.srv[name]
	if !ok {
		return "", nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	return name, recs, nil
}
