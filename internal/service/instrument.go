package service

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dcounter/dcounter/internal/crdt"
)

// OpMetrics counts and times client operations for every front end: the
// dcounter_operations_total and dcounter_request_duration_seconds
// families, labelled by protocol. Register it once and wrap each front
// end's Service with Instrument.
type OpMetrics struct {
	ops      *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewOpMetrics returns the operation counters, registered with reg.
func NewOpMetrics(reg prometheus.Registerer) *OpMetrics {
	m := &OpMetrics{ops: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dcounter_operations_total",
		Help: "Client operations by protocol (http, resp), op (get, inc, dec, del, ttl, list), key type (default, named) and outcome (ok, bad_request, not_found, unavailable, unauthorized, failed).",
	}, []string{"protocol", "op", "key_type", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "dcounter_request_duration_seconds",
			Help: "Time the node took to serve client operations, by protocol (http, resp) and op (get, inc, dec, del, ttl, list), from the service call to its result (protocol parsing and the reply write excluded). A write applied in a pipelined group is observed once with the whole group's duration, what it waited for.",
			// 25µs (an in-memory read) to about 3s (a stalled fsync).
			Buckets: prometheus.ExponentialBuckets(0.000025, 2, 18),
		}, []string{"protocol", "op"}),
	}
	reg.MustRegister(m.ops, m.duration)
	return m
}

// The label values, indexed so that a recording finds its counter
// without building a label list.
var (
	opNames      = [...]string{opGet: "get", opInc: "inc", opDec: "dec", opDel: "del", opTTL: "ttl", opList: "list"}
	keyTypes     = [...]string{"default", "named"}
	outcomeNames = [...]string{outOK: "ok", outBad: "bad_request", outNotFound: "not_found", outUnavailable: "unavailable", outAuth: "unauthorized", outFailed: "failed"}
)

const (
	opGet = iota
	opInc
	opDec
	opDel
	opTTL
	opList
	numOps
)

const (
	outOK = iota
	outBad
	outNotFound
	outUnavailable
	outAuth
	outFailed
	numOutcomes
)

// outcomeOf names err's outcome.
func outcomeOf(err error) int {
	if err == nil {
		return outOK
	}
	switch ClassOf(err) {
	case ClassInvalid, ClassConflict, ClassTooLarge, ClassMethod:
		return outBad
	case ClassNotFound:
		return outNotFound
	case ClassUnavailable:
		return outUnavailable
	case ClassUnauthenticated, ClassForbidden:
		return outAuth
	}
	return outFailed
}

// Instrument returns s with every operation counted and timed in m under
// protocol. Recording allocates nothing: the counters and histograms are
// resolved here.
func Instrument(s Service, m *OpMetrics, protocol string) Service {
	in := &instrumented{s: s}
	for op := range numOps {
		in.durations[op] = m.duration.WithLabelValues(protocol, opNames[op])
		for kt := range len(keyTypes) {
			for out := range numOutcomes {
				in.counters[op][kt][out] = m.ops.WithLabelValues(protocol, opNames[op], keyTypes[kt], outcomeNames[out])
			}
		}
	}
	return in
}

type instrumented struct {
	s         Service
	counters  [numOps][2][numOutcomes]prometheus.Counter
	durations [numOps]prometheus.Observer
}

var _ Service = (*instrumented)(nil)

// done counts the operation and observes its duration since start.
func (in *instrumented) done(op int, key string, err error, start time.Time) {
	in.durations[op].Observe(time.Since(start).Seconds())
	in.record(op, key, err)
}

func (in *instrumented) record(op int, key string, err error) {
	kt := 1
	if key == crdt.DefaultKey {
		kt = 0
	}
	in.counters[op][kt][outcomeOf(err)].Inc()
}

func addOp(delta int64) int {
	if delta < 0 {
		return opDec
	}
	return opInc
}

func (in *instrumented) Get(ctx context.Context, key string) (Counter, error) {
	start := time.Now()
	c, err := in.s.Get(ctx, key)
	in.done(opGet, key, err, start)
	return c, err
}

func (in *instrumented) Add(ctx context.Context, key string, delta int64, w WriteOptions) (Counter, bool, error) {
	start := time.Now()
	c, replayed, err := in.s.Add(ctx, key, delta, w)
	in.done(addOp(delta), key, err, start)
	return c, replayed, err
}

func (in *instrumented) Delete(ctx context.Context, key string, idem string) (bool, bool, error) {
	start := time.Now()
	existed, replayed, err := in.s.Delete(ctx, key, idem)
	in.done(opDel, key, err, start)
	return existed, replayed, err
}

func (in *instrumented) SetTTL(ctx context.Context, key string, ttl time.Duration, idem string) (Counter, bool, error) {
	start := time.Now()
	c, replayed, err := in.s.SetTTL(ctx, key, ttl, idem)
	in.done(opTTL, key, err, start)
	return c, replayed, err
}

func (in *instrumented) Writes(ctx context.Context, ws []Write, out []WriteResult) {
	start := time.Now()
	in.s.Writes(ctx, ws, out)
	// Every write of the group waited for all of it: each is observed
	// with the group's duration rather than a share of it, so that a
	// pipelining client's latency reads like a lone client's.
	d := time.Since(start).Seconds()
	for i := range ws {
		op := opTTL
		switch ws[i].Op {
		case OpAdd:
			op = addOp(ws[i].Delta)
		case OpDelete:
			op = opDel
		}
		in.durations[op].Observe(d)
		in.record(op, ws[i].Key, out[i].Err)
	}
}

func (in *instrumented) List(ctx context.Context, req ListRequest) (ListPage, error) {
	start := time.Now()
	p, err := in.s.List(ctx, req)
	in.done(opList, "", err, start)
	return p, err
}

func (in *instrumented) Nodes(ctx context.Context) ([]Member, error) { return in.s.Nodes(ctx) }

func (in *instrumented) Health(ctx context.Context) (bool, Health) { return in.s.Health(ctx) }

// Record counts an operation a front end refused before it reached the
// service (bad arguments, no credentials), so that every request shows in
// the metrics once. op is one of get, inc, dec, del, ttl, list; others are
// not counted.
func (in *instrumented) Record(op, key string, err error) {
	for i, name := range opNames {
		if name == op {
			in.record(i, key, err)
			return
		}
	}
}

// Recorder is implemented by an instrumented Service: front ends count
// the requests they refuse themselves through it.
type Recorder interface {
	Record(op, key string, err error)
}

var _ Recorder = (*instrumented)(nil)
