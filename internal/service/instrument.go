package service

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dcounter/dcounter/internal/crdt"
)

// OpMetrics counts client operations for every front end: one
// dcounter_operations_total family, labelled by protocol. Register it once
// and wrap each front end's Service with Instrument.
type OpMetrics struct {
	ops *prometheus.CounterVec
}

// NewOpMetrics returns the operation counters, registered with reg.
func NewOpMetrics(reg prometheus.Registerer) *OpMetrics {
	m := &OpMetrics{ops: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dcounter_operations_total",
		Help: "Client operations by protocol (http, resp), op (get, inc, dec, del, ttl, list), key type (default, named) and outcome (ok, bad_request, not_found, unavailable, unauthorized, failed).",
	}, []string{"protocol", "op", "key_type", "outcome"})}
	reg.MustRegister(m.ops)
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

// Instrument returns s with every operation counted in m under protocol.
// Recording allocates nothing: the counters are resolved here.
func Instrument(s Service, m *OpMetrics, protocol string) Service {
	in := &instrumented{s: s}
	for op := range numOps {
		for kt := range len(keyTypes) {
			for out := range numOutcomes {
				in.counters[op][kt][out] = m.ops.WithLabelValues(protocol, opNames[op], keyTypes[kt], outcomeNames[out])
			}
		}
	}
	return in
}

type instrumented struct {
	s        Service
	counters [numOps][2][numOutcomes]prometheus.Counter
}

var _ Service = (*instrumented)(nil)

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
	c, err := in.s.Get(ctx, key)
	in.record(opGet, key, err)
	return c, err
}

func (in *instrumented) Add(ctx context.Context, key string, delta int64, w WriteOptions) (Counter, bool, error) {
	c, replayed, err := in.s.Add(ctx, key, delta, w)
	in.record(addOp(delta), key, err)
	return c, replayed, err
}

func (in *instrumented) Delete(ctx context.Context, key string, idem string) (bool, bool, error) {
	existed, replayed, err := in.s.Delete(ctx, key, idem)
	in.record(opDel, key, err)
	return existed, replayed, err
}

func (in *instrumented) SetTTL(ctx context.Context, key string, ttl time.Duration, idem string) (Counter, bool, error) {
	c, replayed, err := in.s.SetTTL(ctx, key, ttl, idem)
	in.record(opTTL, key, err)
	return c, replayed, err
}

func (in *instrumented) Writes(ctx context.Context, ws []Write, out []WriteResult) {
	in.s.Writes(ctx, ws, out)
	for i := range ws {
		op := opTTL
		switch ws[i].Op {
		case OpAdd:
			op = addOp(ws[i].Delta)
		case OpDelete:
			op = opDel
		}
		in.record(op, ws[i].Key, out[i].Err)
	}
}

func (in *instrumented) List(ctx context.Context, req ListRequest) (ListPage, error) {
	p, err := in.s.List(ctx, req)
	in.record(opList, "", err)
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
