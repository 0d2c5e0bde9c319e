package api

import (
	"encoding/json"
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
