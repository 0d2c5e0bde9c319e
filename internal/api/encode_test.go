package api

import (
	"encoding/json"
	"io"
	"math"
	"testing"
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

// plainAmount is a shortcut of the full decoder: whatever it accepts, the
// decoder (decodeBytes, then the amount's own checks) accepts with the
// same amount.
func FuzzPlainAmount(f *testing.F) {
	for _, s := range []string{`{"amount":5}`, ` { "amount" : 42 } `, "{\n\t\"amount\":\r1}", `{"amount":05}`, `{"amount":0}`,
		`{"amount":9223372036854775807}`, `{"amount":9223372036854775808}`, `{"Amount":5}`, `{"amount":5,}`, `{"amount":5}}`,
		`{"amount":-5}`, `{"amount":5e1}`, `{"amount":5.0}`, `{"amount":5}` + "\v", "\u00a0{\"amount\":5}", `{"amount" :5 ,"ttl_ms":1}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, ok := plainAmount([]byte(s))
		if !ok {
			return
		}
		var req struct {
			Amount json.RawMessage `json:"amount"`
		}
		empty, err := decodeBytes([]byte(s), &req, ErrBadJSON)
		if err != nil || empty || req.Amount == nil {
			t.Fatalf("plainAmount(%q) = %d, but the decoder says empty=%v, %v", s, n, empty, err)
		}
		m, err := parseCount(req.Amount)
		if err != nil || m == 0 || m > math.MaxInt64 || int64(m) != n {
			t.Fatalf("plainAmount(%q) = %d, the decoder's amount %s (%d, %v)", s, n, req.Amount, m, err)
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
