package respserver

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dcounter/dcounter/internal/crdt"
	"github.com/dcounter/dcounter/internal/service"
)

// fakeService is an in-memory service.Service: a map of counters with
// expiries on a fake clock (advance with tick), idempotency, and a log of
// the calls that change or read counters.
type fakeService struct {
	mu     sync.Mutex
	now    time.Duration
	keys   map[string]*fakeKey
	idem   map[string]fakeIdem
	calls  []string
	health service.Health

	// block, if set, makes Writes signal entered and wait for block.
	block   chan struct{}
	entered chan struct{}
}

type fakeKey struct {
	v   int64
	exp time.Duration // absolute on the fake clock; 0: none
}

type fakeIdem struct {
	req string
	res service.WriteResult
}

var (
	_ service.Service  = (*fakeService)(nil)
	_ service.Recorder = (*fakeService)(nil)
)

func newFake() *fakeService {
	return &fakeService{
		keys:   map[string]*fakeKey{},
		idem:   map[string]fakeIdem{},
		health: service.Health{Status: "ok", ID: "r1", Name: "n1", Cluster: "c", Members: 3, Peers: 2, Durability: "fsync=always", PendingKeys: 1, ClockOffsetMax: 1500 * time.Millisecond},
	}
}

func (f *fakeService) tick(d time.Duration) {
	f.mu.Lock()
	f.now += d
	f.mu.Unlock()
}

func (f *fakeService) log(s string) { f.calls = append(f.calls, s) }

// callLog returns the calls so far and forgets them.
func (f *fakeService) callLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

func (f *fakeService) set(key string, v int64, ttl time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := &fakeKey{v: v}
	if ttl > 0 {
		k.exp = f.now + ttl
	}
	f.keys[key] = k
}

func (f *fakeService) live(key string) *fakeKey {
	k := f.keys[key]
	if k == nil || (k.exp != 0 && k.exp <= f.now) {
		return nil
	}
	return k
}

func (f *fakeService) counter(key string) service.Counter {
	k := f.live(key)
	if k == nil {
		return service.Counter{Key: key}
	}
	c := service.Counter{Key: key, Value: k.v, Live: true}
	if k.exp != 0 {
		c.TTL = k.exp - f.now
	}
	return c
}

func (f *fakeService) Get(ctx context.Context, key string) (service.Counter, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log("get " + key)
	if err := crdt.ValidKey(key); err != nil {
		return service.Counter{}, err
	}
	return f.counter(key), nil
}

func (f *fakeService) Add(ctx context.Context, key string, delta int64, w service.WriteOptions) (service.Counter, bool, error) {
	r := f.one(service.Write{Op: service.OpAdd, Key: key, Delta: delta, Opts: w})
	return r.Counter, r.Replayed, r.Err
}

func (f *fakeService) Delete(ctx context.Context, key string, idem string) (bool, bool, error) {
	r := f.one(service.Write{Op: service.OpDelete, Key: key, Opts: service.WriteOptions{Idem: idem}})
	return r.Applied, r.Replayed, r.Err
}

func (f *fakeService) SetTTL(ctx context.Context, key string, ttl time.Duration, idem string) (service.Counter, bool, error) {
	op := service.OpExpire
	if ttl == 0 {
		op = service.OpPersist
	}
	r := f.one(service.Write{Op: op, Key: key, TTL: ttl, Opts: service.WriteOptions{Idem: idem}})
	if r.Err == nil && !r.Applied {
		r.Err = service.ErrNotFound
	}
	return r.Counter, r.Replayed, r.Err
}

func (f *fakeService) one(w service.Write) service.WriteResult {
	out := make([]service.WriteResult, 1)
	f.Writes(context.Background(), []service.Write{w}, out)
	return out[0]
}

func (f *fakeService) Writes(ctx context.Context, ws []service.Write, out []service.WriteResult) {
	if f.block != nil {
		f.entered <- struct{}{}
		select {
		case <-f.block:
		case <-ctx.Done():
			for i := range ws {
				out[i] = service.WriteResult{Err: ctx.Err()}
			}
			return
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log(fmt.Sprintf("writes %d", len(ws)))
	for i := range ws {
		out[i] = f.apply(ws[i])
	}
}

func (f *fakeService) apply(w service.Write) service.WriteResult {
	if err := crdt.ValidKey(w.Key); err != nil {
		return service.WriteResult{Err: err}
	}
	req := fmt.Sprintf("%d %q %d %v %v %d %d", w.Op, w.Key, w.Delta, w.Opts.TTL, w.Opts.TTLAlways, w.TTL, w.Cond)
	if w.Opts.Idem != "" {
		if prev, ok := f.idem[w.Opts.Idem]; ok {
			if prev.req != req {
				return service.WriteResult{Err: service.ErrIdempotencyReused}
			}
			prev.res.Replayed = true
			return prev.res
		}
	}
	r := f.applyNew(w)
	if w.Opts.Idem != "" && r.Err == nil {
		f.idem[w.Opts.Idem] = fakeIdem{req: req, res: r}
	}
	return r
}

func (f *fakeService) applyNew(w service.Write) service.WriteResult {
	k := f.live(w.Key)
	switch w.Op {
	case service.OpAdd:
		if w.Delta == 0 {
			return service.WriteResult{Err: crdt.ErrBadAmount}
		}
		if k == nil {
			k = &fakeKey{}
		}
		if (w.Delta > 0 && k.v > math.MaxInt64-w.Delta) || (w.Delta < 0 && k.v < math.MinInt64-w.Delta) {
			return service.WriteResult{Err: fmt.Errorf("fake: %w", crdt.ErrOverflow)}
		}
		k.v += w.Delta
		if w.Opts.TTL > 0 && (k.exp == 0 || w.Opts.TTLAlways) {
			k.exp = f.now + w.Opts.TTL
		}
		f.keys[w.Key] = k
		return service.WriteResult{Counter: f.counter(w.Key), Applied: true}
	case service.OpDelete:
		if k == nil {
			return service.WriteResult{Counter: service.Counter{Key: w.Key}}
		}
		delete(f.keys, w.Key)
		return service.WriteResult{Counter: service.Counter{Key: w.Key}, Applied: true, Prior: k.v}
	case service.OpExpire:
		if k == nil {
			return service.WriteResult{Counter: service.Counter{Key: w.Key}}
		}
		deadline := f.now + w.TTL
		ok := true
		switch w.Cond {
		case service.ExpireNX:
			ok = k.exp == 0
		case service.ExpireXX:
			ok = k.exp != 0
		case service.ExpireGT:
			ok = k.exp != 0 && deadline > k.exp
		case service.ExpireLT:
			ok = k.exp == 0 || deadline < k.exp
		}
		if !ok {
			return service.WriteResult{Counter: f.counter(w.Key)}
		}
		if w.TTL <= 0 {
			delete(f.keys, w.Key)
			return service.WriteResult{Counter: service.Counter{Key: w.Key}, Applied: true}
		}
		k.exp = deadline
		return service.WriteResult{Counter: f.counter(w.Key), Applied: true}
	case service.OpPersist:
		if k == nil || k.exp == 0 {
			return service.WriteResult{Counter: f.counter(w.Key)}
		}
		k.exp = 0
		return service.WriteResult{Counter: f.counter(w.Key), Applied: true}
	}
	return service.WriteResult{Err: fmt.Errorf("fake: unknown op %d", w.Op)}
}

func (f *fakeService) List(ctx context.Context, req service.ListRequest) (service.ListPage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log(fmt.Sprintf("list %q %q %d", req.Prefix, req.Cursor, req.Limit))
	var keys []string
	for k := range f.keys {
		if f.live(k) != nil && strings.HasPrefix(k, req.Prefix) && k > req.Cursor {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	limit := req.Limit
	if limit == 0 {
		limit = service.DefaultListLimit
	}
	var p service.ListPage
	for i, k := range keys {
		if i == limit {
			p.Next = keys[i-1]
			break
		}
		p.Items = append(p.Items, f.counter(k))
	}
	return p, nil
}

func (f *fakeService) Nodes(ctx context.Context) ([]service.Member, error) { return nil, nil }

func (f *fakeService) Health(ctx context.Context) (bool, service.Health) {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := f.health
	h.Keys = len(f.keys)
	for k := range f.keys {
		if f.live(k) != nil {
			h.LiveKeys++
		}
	}
	return true, h
}

func (f *fakeService) Record(op, key string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log(fmt.Sprintf("record %s %d", op, service.ClassOf(err)))
}
