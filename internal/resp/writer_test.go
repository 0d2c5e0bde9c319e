package resp

import (
	"bytes"
	"errors"
	"math"
	"testing"
)

func TestWriterGolden(t *testing.T) {
	for _, tc := range []struct {
		name       string
		write      func(w *Writer)
		resp2, res string // res is RESP3
	}{
		{"simple string", func(w *Writer) { w.SimpleString("OK") }, "+OK\r\n", "+OK\r\n"},
		{"error", func(w *Writer) { w.Error("ERR unknown command 'foo'") }, "-ERR unknown command 'foo'\r\n", "-ERR unknown command 'foo'\r\n"},
		{"error CR LF replaced", func(w *Writer) { w.Error("ERR bad\r\narg\n") }, "-ERR bad  arg \r\n", "-ERR bad  arg \r\n"},
		{"int", func(w *Writer) { w.Int(-42) }, ":-42\r\n", ":-42\r\n"},
		{"int min", func(w *Writer) { w.Int(math.MinInt64) }, ":-9223372036854775808\r\n", ":-9223372036854775808\r\n"},
		{"bulk", func(w *Writer) { w.Bulk([]byte("a\r\nb")) }, "$4\r\na\r\nb\r\n", "$4\r\na\r\nb\r\n"},
		{"bulk nil is empty", func(w *Writer) { w.Bulk(nil) }, "$0\r\n\r\n", "$0\r\n\r\n"},
		{"bulk string", func(w *Writer) { w.BulkString("hello") }, "$5\r\nhello\r\n", "$5\r\nhello\r\n"},
		{"bulk int", func(w *Writer) { w.BulkInt(-1234567) }, "$8\r\n-1234567\r\n", "$8\r\n-1234567\r\n"},
		{"bulk int zero", func(w *Writer) { w.BulkInt(0) }, "$1\r\n0\r\n", "$1\r\n0\r\n"},
		{"bulk int max", func(w *Writer) { w.BulkInt(math.MaxInt64) }, "$19\r\n9223372036854775807\r\n", "$19\r\n9223372036854775807\r\n"},
		{"null", func(w *Writer) { w.Null() }, "$-1\r\n", "_\r\n"},
		{"null array", func(w *Writer) { w.NullArray() }, "*-1\r\n", "_\r\n"},
		{"array", func(w *Writer) { w.Array(2); w.Int(1); w.BulkString("x") }, "*2\r\n:1\r\n$1\r\nx\r\n", "*2\r\n:1\r\n$1\r\nx\r\n"},
		{"empty array", func(w *Writer) { w.Array(0) }, "*0\r\n", "*0\r\n"},
		{"map", func(w *Writer) { w.Map(1); w.BulkString("k"); w.Int(7) }, "*2\r\n$1\r\nk\r\n:7\r\n", "%1\r\n$1\r\nk\r\n:7\r\n"},
		{"set", func(w *Writer) { w.Set(2); w.BulkString("a"); w.BulkString("b") }, "*2\r\n$1\r\na\r\n$1\r\nb\r\n", "~2\r\n$1\r\na\r\n$1\r\nb\r\n"},
		{"verbatim", func(w *Writer) { w.Verbatim("# Server\r\nv:1\r\n") }, "$15\r\n# Server\r\nv:1\r\n\r\n", "=19\r\ntxt:# Server\r\nv:1\r\n\r\n"},
		{"bool true", func(w *Writer) { w.Bool(true) }, ":1\r\n", "#t\r\n"},
		{"bool false", func(w *Writer) { w.Bool(false) }, ":0\r\n", "#f\r\n"},
	} {
		for _, proto := range []int{2, 3} {
			var out bytes.Buffer
			w := NewWriter(&out)
			w.SetProtocol(proto)
			tc.write(w)
			want := tc.resp2
			if proto == 3 {
				want = tc.res
			}
			if w.Buffered() != len(want) {
				t.Errorf("%s RESP%d: Buffered %d, want %d", tc.name, proto, w.Buffered(), len(want))
			}
			if out.Len() != 0 {
				t.Errorf("%s RESP%d: written before Flush", tc.name, proto)
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			if out.String() != want {
				t.Errorf("%s RESP%d: got %q, want %q", tc.name, proto, out.String(), want)
			}
		}
	}
}

func TestWriterProtocol(t *testing.T) {
	w := NewWriter(&bytes.Buffer{})
	if w.Protocol() != 2 {
		t.Fatalf("default protocol %d", w.Protocol())
	}
	w.SetProtocol(3)
	w.SetProtocol(4) // ignored
	if w.Protocol() != 3 {
		t.Fatalf("protocol %d", w.Protocol())
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestWriterFlushError(t *testing.T) {
	w := NewWriter(failWriter{})
	w.SimpleString("OK")
	if err := w.Flush(); err == nil {
		t.Fatal("Flush hid the write error")
	}
	if w.Buffered() != 0 {
		t.Fatal("buffer kept after a failed Flush")
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func TestWriterAllocatesNothing(t *testing.T) {
	w := NewWriter(discard{})
	key := []byte("counter:1")
	for _, proto := range []int{2, 3} {
		w.SetProtocol(proto)
		allocs := testing.AllocsPerRun(1000, func() {
			w.Int(12345)
			w.BulkInt(-987654321)
			w.Bulk(key)
			w.BulkString("x")
			w.SimpleString("OK")
			w.Error("ERR value is not an integer or out of range")
			w.Null()
			w.NullArray()
			w.Map(1)
			w.Set(1)
			w.Array(1)
			w.Verbatim("# dcounter\r\n")
			w.Bool(true)
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("RESP%d: %v allocations per round of replies", proto, allocs)
		}
	}
}
