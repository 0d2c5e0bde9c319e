package api

import (
	"encoding/json"
	"errors"
	"io"
	"math"
	"testing"

	"github.com/dcounter/dcounter/internal/service"
)

// appendCounter must write exactly what json.Marshal (writeJSON) writes.
func TestAppendCounterMatchesMarshal(t *testing.T) {
	keys := []string{"default", "", "a/b", "k e y", `q"uote`, `back\slash`, "<script>&", "tab\there",
		"\x00\x1f\x7f", "héllo", "日本", "bad\xffutf8", "\u2028\u2029", "~!@#$%^*()_+=-`{}[]|:;',.?"}
	for _, k := range keys {
		for _, r := range []CounterResponse{
			{Key: k, Value: 0}, {Key: k, Value: -42}, {Key: k, Value: math.MaxInt64, TTLMillis: 1},
			{Key: k, Value: math.MinInt64, TTLMillis: 3_600_000},
		} {
			want, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, '\n')
			if got := appendCounter(nil, &r); string(got) != string(want) {
				t.Errorf("appendCounter(%+v) = %q, want %q", r, got, want)
			}
		}
	}
}

func TestHeaderLens(t *testing.T) {
	for i, v := range headerLens {
		if len(v) != 1 || v[0] != itoa(i) {
			t.Fatalf("headerLens[%d] = %q", i, v)
		}
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// quickWrite is a shortcut of the full decoder: whatever it accepts,
// decodeWrite accepts with the same result.
func FuzzQuickWrite(f *testing.F) {
	for _, s := range []string{`{"amount":5}`, ` { "amount" : 42 } `, "{\n\t\"amount\":\r1}", `{"amount":05}`, `{"amount":0}`,
		`{"amount":9223372036854775807}`, `{"amount":9223372036854775808}`, `{"amount":99999999999999999999}`, `{"Amount":5}`, `{"amount":5,}`, `{"amount":5}}`,
		`{"amount":-5}`, `{"amount":5e1}`, `{"amount":5.0}`, `{"amount":5}` + "\v", "\u00a0{\"amount\":5}", `{"amount" :5 ,"ttl_ms":1}`,
		`{}`, ` {} `, `{"amount":1,"ttl_seconds":60}`, `{"ttl_seconds":60,"amount":3,"ttl_mode":"always"}`, `{"amount":1,"ttl_mode":"if_none","ttl_ms":1500}`,
		`{"amount":1,"ttl_mode":"always"}`, `{"ttl_seconds":1,"ttl_ms":1}`, `{"amount":1,"amount":2}`, `{"ttl_mode":"always","ttl_mode":"always","ttl_ms":5}`,
		`{"ttl_seconds":315360001}`, `{"ttl_seconds":315360000}`, `{"ttl_ms":315360000000}`, `{"ttl_mode":"ALWAYS","ttl_ms":5}`, `{"ttl_mode":"alw\u0061ys","ttl_ms":5}`,
		`{"amount":1,"other":2}`, `{"amount":null}`, `{"amount":"5"}`, `{"amount":1 "ttl_ms":2}`, `{,"amount":1}`, `{"amount":1}x`, `[1]`, ``} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		wr, ok := quickWrite([]byte(s))
		if !ok {
			return
		}
		full, err := decodeWrite([]byte(s))
		if err != nil || full != wr {
			t.Fatalf("quickWrite(%q) = %+v, but decodeWrite gives %+v, %v", s, wr, full, err)
		}
	})
}

func TestParseWriteAllocs(t *testing.T) {
	body := []byte(`{"amount":41}`)
	r := &bytesReader{}
	if n := testing.AllocsPerRun(100, func() {
		r.b = body
		if wr, err := ParseWrite(r); err != nil || wr.Amount != 41 {
			t.Fatal(wr, err)
		}
	}); n > 0 {
		t.Errorf("ParseWrite(%s): %v allocations, want 0", body, n)
	}
}

type bytesReader struct{ b []byte }

func (r *bytesReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// BenchmarkParseWrite: the body of a write as clients send it.
//
//	go test -run '^$' -bench ParseWrite -benchmem ./internal/api/
func BenchmarkParseWrite(b *testing.B) {
	body := []byte(`{"amount":41}`)
	r := &bytesReader{}
	b.ReportAllocs()
	for b.Loop() {
		r.b = body
		if _, err := ParseWrite(r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseWriteBody(b *testing.B) {
	for _, body := range []string{`{"amount":41}`, `{"amount":1,"ttl_seconds":60}`, `{"amount":1,"ttl_seconds":60,"ttl_mode":"always"}`} {
		b.Run(body, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseWriteBody([]byte(body)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestAppendErrorAsEncodingJSON: the {"error":…} body is what encoding/json
// writes for an ErrorResponse, whatever the message holds.
func TestAppendErrorAsEncodingJSON(t *testing.T) {
	for _, msg := range []string{"", "not found", `a "quoted" \ path`, "<script>&", "tab\there\n", "bad utf-8 \xff\xfe", "ü €", "\u2028"} {
		err := errors.New(msg)
		want, _ := json.Marshal(ErrorResponse{Error: service.Message(err)})
		if got := appendError(nil, err); string(got) != string(want)+"\n" {
			t.Errorf("appendError(%q) = %q, want %q", msg, got, want)
		}
	}
}
