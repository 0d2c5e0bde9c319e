package discovery

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dcounter/dcounter/internal/crdt"
)

// Limits of the registry and its requests.
const (
	MaxBody    = 16 << 10
	MaxEntries = 10_000
	MinTTL     = 100 * time.Millisecond
	maxNameLen = 256
	maxAddrLen = 255
)

// Entry is one registered node.
type Entry struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	GossipAddr string    `json:"gossip_addr"`
	HTTPAddr   string    `json:"http_addr"`
	LastSeen   time.Time `json:"last_seen"`
}

// Errors of the registry. The handlers map them to HTTP statuses.
var (
	ErrBadEntry   = errors.New("discovery: bad request")
	ErrUnknownID  = errors.New("discovery: unknown id: register again")
	ErrFull       = errors.New("discovery: registry full")
	ErrSourceFull = errors.New("discovery: too many entries from this source")
	ErrOwned      = errors.New("discovery: id registered from another source")
)

// record is an entry and what the registry needs to know about it.
type record struct {
	Entry
	source  string
	expires time.Time // on the clock the caller passes in (monotonic with the real one)
}

// Registry is the discovery server's pure core: the live entries, their
// expiry and bounds. It does no I/O and reads no clock — every call takes
// now — and is not safe for concurrent use (Server guards it).
//
// Invariants: at most maxEntries entries in total and maxPerSource per
// source; an entry lives TTL after its last register or heartbeat, measured
// on the caller's clock, so a wall-clock step never keeps an entry alive or
// kills it early (Server passes time.Now, whose monotonic reading ignores
// steps).
type Registry struct {
	ttl          time.Duration
	maxEntries   int
	maxPerSource int
	// sticky: a live id can be refreshed only from the source that
	// registered it. Used when requests are not authenticated, so that
	// nobody else can take a live node's entry over.
	sticky bool

	entries   map[string]*record
	perSource map[string]int
	dirty     bool
}

// RegistryConfig bounds a Registry. Zero fields take the defaults stated.
type RegistryConfig struct {
	// TTL is how long an entry lives without a heartbeat. Default 5s.
	TTL time.Duration
	// MaxEntries bounds the registry. Default MaxEntries (10,000).
	MaxEntries int
	// MaxPerSource bounds the entries one source (a client IP address) may
	// hold. Default 0: no bound.
	MaxPerSource int
	// Sticky keeps a live id with the source that registered it.
	Sticky bool
}

// NewRegistry returns an empty registry.
func NewRegistry(cfg RegistryConfig) *Registry {
	if cfg.TTL <= 0 {
		cfg.TTL = 5 * time.Second
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = MaxEntries
	}
	return &Registry{ttl: cfg.TTL, maxEntries: cfg.MaxEntries, maxPerSource: cfg.MaxPerSource,
		sticky: cfg.Sticky, entries: map[string]*record{}, perSource: map[string]int{}}
}

// TTL is the configured time to live.
func (r *Registry) TTL() time.Duration { return r.ttl }

// Len is the number of entries, expired ones not yet swept included.
func (r *Registry) Len() int { return len(r.entries) }

// Upsert validates e and stores it, from source at now. A heartbeat
// (register false) for an unknown id fails with ErrUnknownID. It reports
// whether the id is new.
func (r *Registry) Upsert(e Entry, source string, register bool, now time.Time) (created bool, err error) {
	if err := Validate(&e); err != nil {
		return false, err
	}
	cur := r.entries[e.ID]
	if cur != nil && now.After(cur.expires) {
		r.remove(cur) // expired but not swept yet: as good as gone
		cur = nil
	}
	switch {
	case cur == nil && !register:
		return false, fmt.Errorf("%w %s", ErrUnknownID, e.ID)
	case cur != nil && r.sticky && cur.source != "" && cur.source != source:
		return false, fmt.Errorf("%w until it expires (%v without a heartbeat)", ErrOwned, r.ttl)
	case cur == nil && len(r.entries) >= r.maxEntries:
		return false, fmt.Errorf("%w (%d entries)", ErrFull, r.maxEntries)
	case cur == nil && r.maxPerSource > 0 && r.perSource[source] >= r.maxPerSource:
		return false, fmt.Errorf("%w (%d entries)", ErrSourceFull, r.maxPerSource)
	}
	if cur != nil {
		r.remove(cur)
	}
	e.LastSeen = now.Round(0) // wall clock only: what /peers shows
	r.entries[e.ID] = &record{Entry: e, source: source, expires: now.Add(r.ttl)}
	r.perSource[source]++
	r.dirty = true
	return cur == nil, nil
}

func (r *Registry) remove(rec *record) {
	delete(r.entries, rec.ID)
	if r.perSource[rec.source]--; r.perSource[rec.source] <= 0 {
		delete(r.perSource, rec.source)
	}
	r.dirty = true
}

// Expire removes and returns the entries whose TTL has run out by now.
func (r *Registry) Expire(now time.Time) []Entry {
	var gone []Entry
	for _, rec := range r.entries {
		if now.After(rec.expires) {
			r.remove(rec)
			gone = append(gone, rec.Entry)
		}
	}
	return gone
}

// Peers returns the live entries at now, sorted by name then id.
func (r *Registry) Peers(now time.Time) []Entry {
	es := make([]Entry, 0, len(r.entries))
	for _, rec := range r.entries {
		if !now.After(rec.expires) {
			es = append(es, rec.Entry)
		}
	}
	sortEntries(es)
	return es
}

// Snapshot returns every entry with the time it has left, for persistence.
func (r *Registry) Snapshot(now time.Time) []Entry { return r.Peers(now) }

// Restore adds entries read back from a file at now. A restored entry lives
// at most one TTL from now, whatever its recorded last_seen says, so that a
// file written under a wrong clock cannot keep entries alive; entries that
// were already expired by their own record, invalid or over the bounds are
// skipped. It returns how many were restored.
func (r *Registry) Restore(es []Entry, now time.Time) int {
	n := 0
	for _, e := range es {
		age := now.Round(0).Sub(e.LastSeen)
		if age > r.ttl {
			continue
		}
		left := r.ttl - max(age, 0)
		// No source: whoever heartbeats first after the restart owns it.
		if _, err := r.Upsert(e, "", true, now); err != nil {
			continue
		}
		rec := r.entries[e.ID]
		rec.expires, rec.LastSeen = now.Add(left), e.LastSeen
		n++
	}
	return n
}

// TakeDirty reports whether the registry changed since the last call.
func (r *Registry) TakeDirty() bool {
	d := r.dirty
	r.dirty = false
	return d
}

// MarkDirty asks for the next TakeDirty to report a change (a save failed).
func (r *Registry) MarkDirty() { r.dirty = true }

func sortEntries(es []Entry) {
	slices.SortFunc(es, func(a, b Entry) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}

// Validate checks e and puts its id in canonical (lower-case) form, so one
// replica has one entry however its id was spelled.
func Validate(e *Entry) error {
	id, err := crdt.ParseReplicaID(e.ID)
	if err != nil {
		return fmt.Errorf("%w: id must be 16 hex digits", ErrBadEntry)
	}
	e.ID = id.String()
	if len(e.Name) > maxNameLen {
		return fmt.Errorf("%w: name longer than %d bytes", ErrBadEntry, maxNameLen)
	}
	if err := validAddr(e.GossipAddr); err != nil {
		return fmt.Errorf("%w: gossip_addr: %v", ErrBadEntry, err)
	}
	if e.HTTPAddr != "" {
		if err := validAddr(e.HTTPAddr); err != nil {
			return fmt.Errorf("%w: http_addr: %v", ErrBadEntry, err)
		}
	}
	return nil
}

func validAddr(a string) error {
	if a == "" || len(a) > maxAddrLen {
		return errors.New("want host:port")
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil || host == "" {
		return errors.New("want host:port")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return errors.New("port must be 1-65535")
	}
	return nil
}
