package service_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dcounter/dcounter/internal/auth"
	"github.com/dcounter/dcounter/internal/crdt"
	"github.com/dcounter/dcounter/internal/service"
)

// TestOneTableForBothFrontEnds: every class of error is answered by one
// HTTP status and one RESP error code, wherever in the chain the sentinel
// sits.
func TestOneTableForBothFrontEnds(t *testing.T) {
	for _, tc := range []struct {
		err  error
		http int
		resp string
	}{
		{fmt.Errorf("node: %w", crdt.ErrOverflow), http.StatusBadRequest, "ERR increment or decrement would overflow"},
		{crdt.ErrBadKey, http.StatusBadRequest, "ERR key must be 1-512 bytes of valid UTF-8"},
		{fmt.Errorf("%w: key %q", service.ErrNotFound, "k"), http.StatusNotFound, "ERR not found: key \"k\""},
		{service.ErrIdempotencyReused, http.StatusUnprocessableEntity, "ERR this idempotency key was already used for a different request"},
		{service.Unavailable(errors.New("node: shutting down")), http.StatusServiceUnavailable, "TRYAGAIN node: shutting down"},
		{fmt.Errorf("wrapped: %w", service.Unavailable(errors.New("x"))), http.StatusServiceUnavailable, "TRYAGAIN wrapped: x"},
		{context.DeadlineExceeded, http.StatusServiceUnavailable, "TRYAGAIN context deadline exceeded"},
		{auth.ErrUnauthenticated, http.StatusUnauthorized, "NOAUTH "},
		{auth.ErrForbidden, http.StatusForbidden, "NOPERM "},
		{service.Invalid(errors.New("bad\r\ninput")), http.StatusBadRequest, "ERR bad  input"},
		{errors.New("node: write-ahead log failed; this write's outcome is unknown"), http.StatusInternalServerError, "ERR node: write-ahead log failed"},
	} {
		if got := service.HTTPStatus(tc.err); got != tc.http {
			t.Errorf("HTTPStatus(%v) = %d, want %d", tc.err, got, tc.http)
		}
		if got := service.RESPError(tc.err); !strings.HasPrefix(got, tc.resp) || strings.ContainsAny(got, "\r\n") {
			t.Errorf("RESPError(%v) = %q, want it to start with %q, on one line", tc.err, got, tc.resp)
		}
	}
}

// stub answers every call with err.
type stub struct{ err error }

func (s stub) Get(context.Context, string) (service.Counter, error) { return service.Counter{}, s.err }
func (s stub) Add(context.Context, string, int64, service.WriteOptions) (service.Counter, bool, error) {
	return service.Counter{}, false, s.err
}
func (s stub) Delete(context.Context, string, string) (bool, bool, error) { return false, false, s.err }
func (s stub) SetTTL(context.Context, string, time.Duration, string) (service.Counter, bool, error) {
	return service.Counter{}, false, s.err
}
func (s stub) Writes(_ context.Context, ws []service.Write, out []service.WriteResult) {
	for i := range ws {
		out[i] = service.WriteResult{Err: s.err}
	}
}
func (s stub) List(context.Context, service.ListRequest) (service.ListPage, error) {
	return service.ListPage{}, s.err
}
func (s stub) Nodes(context.Context) ([]service.Member, error) { return nil, s.err }
func (s stub) Health(context.Context) (bool, service.Health)   { return true, service.Health{} }

// TestInstrumentCountsOncePerOperationByProtocol: the middleware counts
// each operation once, under its front end's protocol and its outcome,
// and a front end's own refusals through Record.
func TestInstrumentCountsOncePerOperationByProtocol(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := service.NewOpMetrics(reg)
	ctx := context.Background()
	httpSvc := service.Instrument(stub{}, m, "http")
	respSvc := service.Instrument(stub{service.Unavailable(errors.New("stopping"))}, m, "resp")
	httpSvc.Add(ctx, crdt.DefaultKey, 1, service.WriteOptions{})
	httpSvc.Get(ctx, "k")
	out := make([]service.WriteResult, 3)
	respSvc.Writes(ctx, []service.Write{
		{Op: service.OpAdd, Key: "k", Delta: -1},
		{Op: service.OpDelete, Key: "k"},
		{Op: service.OpExpire, Key: "k", TTL: time.Second},
	}, out)
	respSvc.(service.Recorder).Record("inc", "k", service.Invalid(errors.New("not an integer")))
	got := nonZero(t, reg)
	want := map[string]float64{
		`http inc default ok`:        1,
		`http get named ok`:          1,
		`resp dec named unavailable`: 1,
		`resp del named unavailable`: 1,
		`resp ttl named unavailable`: 1,
		`resp inc named bad_request`: 1,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("counted %v, want %v", got, want)
	}
}

// nonZero returns the dcounter_operations_total series that are not 0, by
// "protocol op key_type outcome".
func nonZero(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "dcounter_operations_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if v := m.GetCounter().GetValue(); v != 0 {
				l := map[string]string{}
				for _, lp := range m.GetLabel() {
					l[lp.GetName()] = lp.GetValue()
				}
				out[l["protocol"]+" "+l["op"]+" "+l["key_type"]+" "+l["outcome"]] = v
			}
		}
	}
	return out
}

// TestInstrumentTimesEachOperation: every operation that reached the
// service is observed once in its protocol's and op's latency histogram;
// each write of a group with the group's duration; a front end's own
// refusals are counted but not timed; timing allocates nothing.
func TestInstrumentTimesEachOperation(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := service.NewOpMetrics(reg)
	ctx := context.Background()
	httpSvc := service.Instrument(stub{}, m, "http")
	respSvc := service.Instrument(stub{}, m, "resp")
	httpSvc.Get(ctx, "k")
	httpSvc.Get(ctx, "k")
	httpSvc.List(ctx, service.ListRequest{})
	respSvc.Writes(ctx, []service.Write{
		{Op: service.OpAdd, Key: "k", Delta: 1},
		{Op: service.OpAdd, Key: "k", Delta: -1},
		{Op: service.OpDelete, Key: "k"},
	}, make([]service.WriteResult, 3))
	respSvc.(service.Recorder).Record("ttl", "k", service.Invalid(errors.New("bad ttl")))

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts, sums := map[string]uint64{}, map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "dcounter_request_duration_seconds" {
			continue
		}
		if mf.GetType().String() != "HISTOGRAM" {
			t.Fatalf("type %s, want a histogram", mf.GetType())
		}
		for _, mt := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range mt.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if len(l) != 2 {
				t.Fatalf("labels %v, want protocol and op", l)
			}
			if h := mt.GetHistogram(); h.GetSampleCount() != 0 {
				counts[l["protocol"]+" "+l["op"]] = h.GetSampleCount()
				sums[l["protocol"]+" "+l["op"]] = h.GetSampleSum()
			}
		}
	}
	want := map[string]uint64{"http get": 2, "http list": 1, "resp inc": 1, "resp dec": 1, "resp del": 1}
	if fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Errorf("observed %v, want %v", counts, want)
	}
	if sums["resp inc"] != sums["resp dec"] || sums["resp inc"] != sums["resp del"] {
		t.Errorf("writes of one group observed %v, want the group's duration for each", sums)
	}

	if n := testing.AllocsPerRun(100, func() { httpSvc.Get(ctx, "k") }); n != 0 {
		t.Errorf("an instrumented Get allocates %v times", n)
	}
	ws, out := []service.Write{{Op: service.OpAdd, Key: "k", Delta: 1}, {Op: service.OpDelete, Key: "k"}}, make([]service.WriteResult, 2)
	if n := testing.AllocsPerRun(100, func() { respSvc.Writes(ctx, ws, out) }); n != 0 {
		t.Errorf("an instrumented group of writes allocates %v times", n)
	}
}

// BenchmarkInstrumentedWrites is the middleware's cost on a pipelined
// group of 16 increments: counting and timing, around a service that does
// nothing.
func BenchmarkInstrumentedWrites(b *testing.B) {
	svc := service.Instrument(stub{}, service.NewOpMetrics(prometheus.NewRegistry()), "resp")
	ws := make([]service.Write, 16)
	for i := range ws {
		ws[i] = service.Write{Op: service.OpAdd, Key: "k", Delta: 1}
	}
	out := make([]service.WriteResult, len(ws))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		svc.Writes(ctx, ws, out)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ws)), "ns/write")
}
