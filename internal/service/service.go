// Package service is the typed client service a node offers, and what its
// front ends share: the HTTP/JSON API (package api) and the Redis protocol
// (package respserver) both call a Service, map its errors through one
// table (Class) and record their outcomes through one middleware
// (Instrument).
//
// A Service never returns untyped results: every answer is one of the
// types below, and every error falls in one Class.
package service

import (
	"context"
	"time"
)

// Service is what a node does for clients.
type Service interface {
	// Get returns key as the service sees it now.
	Get(ctx context.Context, key string) (Counter, error)
	// Add adds delta (never zero) to key and returns the value after the
	// write. With w.Idem (an idempotency key) a retry is not applied again:
	// replayed is then true and value the first answer. With w.TTL > 0 the
	// write also sets the key's expiry (see WriteOptions).
	Add(ctx context.Context, key string, delta int64, w WriteOptions) (value Counter, replayed bool, err error)
	// Delete resets key to 0 and removes it from listings on every replica.
	// existed reports whether it was live here.
	Delete(ctx context.Context, key string, idem string) (existed bool, replayed bool, err error)
	// SetTTL gives a live key an expiry ttl from now, or with ttl == 0
	// removes its expiry. It returns ErrNotFound if the key is not live.
	SetTTL(ctx context.Context, key string, ttl time.Duration, idem string) (c Counter, replayed bool, err error)
	// Writes applies ws in order as one group and fills out[i] (len(out)
	// >= len(ws)) with the result of ws[i]. The group's changes are made
	// durable together (one log flush) and answered when all are durable;
	// no other write on this service comes between them. Each write
	// succeeds or fails on its own: a failed one changes nothing.
	Writes(ctx context.Context, ws []Write, out []WriteResult)
	// List returns a page of live keys (see ListRequest).
	List(ctx context.Context, req ListRequest) (ListPage, error)
	// Nodes returns the members as the service sees them.
	Nodes(ctx context.Context) ([]Member, error)
	// Health reports whether the service serves, and its state.
	Health(ctx context.Context) (ok bool, h Health)
}

// WriteOptions qualify an Add.
type WriteOptions struct {
	// Idem is the request's idempotency key ("" for none).
	Idem string
	// TTL, when positive, sets the key's expiry to TTL from now together
	// with the write, in the same durable record: only if the key's
	// generation has no expiry yet (the default, a fixed-window rate
	// limiter's call), or always when TTLAlways is set.
	TTL       time.Duration
	TTLAlways bool
}

// Op is the kind of a Write.
type Op uint8

// The writes a group may hold.
const (
	// OpAdd adds Delta (non-zero) to Key, with Opts.
	OpAdd Op = iota + 1
	// OpDelete resets Key; Applied reports whether it was live, Prior its
	// value then.
	OpDelete
	// OpExpire sets Key's expiry to TTL from now when Key is live and Cond
	// holds; Applied reports whether it was set. A TTL <= 0 (a deadline
	// already past) deletes the key instead, if Cond holds. Counter is the
	// key after the write.
	OpExpire
	// OpPersist removes Key's expiry; Applied reports whether it had one.
	OpPersist
)

// ExpireCond is the condition of an OpExpire, as Redis's EXPIRE options.
type ExpireCond uint8

// Conditions on the key's current expiry; a key without one counts as
// expiring never (so GT never applies to it and LT always does).
const (
	ExpireAlways ExpireCond = iota
	ExpireNX                // only if it has no expiry
	ExpireXX                // only if it has one
	ExpireGT                // only if the new deadline is later
	ExpireLT                // only if the new deadline is earlier
)

// Write is one change of a Writes group.
type Write struct {
	Op    Op
	Key   string
	Delta int64         // OpAdd
	Opts  WriteOptions  // OpAdd; Opts.Idem also for the other ops
	TTL   time.Duration // OpExpire
	Cond  ExpireCond    // OpExpire
}

// WriteResult is the answer to one Write.
type WriteResult struct {
	// Counter is the key after the write (OpAdd, OpExpire, OpPersist).
	Counter Counter
	// Applied: OpDelete, the key was live; OpExpire, OpPersist, the
	// expiry changed. Always true for a successful OpAdd.
	Applied bool
	// Prior is an OpDelete's key's value just before it (0 if not live,
	// and on a replay).
	Prior    int64
	Replayed bool
	Err      error
}

// Counter is a key as a reader sees it.
type Counter struct {
	Key   string
	Value int64
	// TTL is the time left before the key expires; 0 when it has no expiry
	// (or is not live).
	TTL time.Duration
	// Live is false when the key is absent, deleted or expired (Value is 0).
	Live bool
}

// ListRequest asks for a page of live keys.
type ListRequest struct {
	Prefix string
	// Cursor is "" for the first page, else the key to continue after (a
	// previous page's Next).
	Cursor string
	Limit  int // 1..MaxListLimit; 0 means DefaultListLimit
}

// ListPage is one page of live keys, in byte-wise key order. Next, when
// not empty, is the cursor of the following page: the last key visited,
// which need not be in Items (a service may stop early on a stretch of
// dead keys and return a short or even empty page).
type ListPage struct {
	Items []Counter
	Next  string
}

// MaxListLimit bounds a page; DefaultListLimit is used when a request
// gives none.
const (
	MaxListLimit     = 1000
	DefaultListLimit = 100
)

// MaxTTL bounds an expiry: longer ones are refused rather than stored.
const MaxTTL = 10 * 365 * 24 * time.Hour

// MaxIdempotencyKey is the longest idempotency key taken.
const MaxIdempotencyKey = 255

// Member is one member of the cluster as a node sees it.
type Member struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	GossipAddr  string `json:"gossip_addr"`
	HTTPAddr    string `json:"http_addr"`
	Status      string `json:"status"`
	Incarnation uint64 `json:"incarnation"`
	LastSeen    string `json:"last_seen"`
	Self        bool   `json:"self,omitempty"`
}

// Health is a node's state as GET /health and INFO report it.
type Health struct {
	Status  string `json:"status"` // ok, stopping, failed, conflict
	ID      string `json:"id"`
	Name    string `json:"name"`
	Cluster string `json:"cluster"`
	Members int    `json:"members"`
	Peers   int    `json:"peers"`
	// Keys counts every key held, tombstones included; LiveKeys those
	// with a value (which may count keys that expired less than
	// --expiry-grace ago and are not reclaimed yet).
	Keys     int `json:"keys"`
	LiveKeys int `json:"live_keys"`
	// Durability is "memory" or "fsync=<policy>".
	Durability string `json:"durability"`
	// PendingKeys counts keys with changes queued for the next gossip
	// round; ClockOffsetMax is the largest measured clock offset of a
	// member (see dcounter_member_clock_offset_max_seconds). Both say how
	// far behind the others may be.
	PendingKeys    int           `json:"pending_keys"`
	ClockOffsetMax time.Duration `json:"-"`
	Error          string        `json:"error,omitempty"`
}
