package resp

import (
	"bytes"
	"testing"
)

// pipelinedIncr is what redis-benchmark -t incr -P 16 sends: 16 INCRs per
// write (bench/respparse builds the same bytes to compare with redcon).
var pipelinedIncr = bytes.Repeat([]byte("*2\r\n$4\r\nINCR\r\n$20\r\ncounter:__rand_int__\r\n"), 16)

// BenchmarkReadPipelinedIncr reads one pipelined buffer of 16 INCRs per
// iteration from a connection that always has more.
func BenchmarkReadPipelinedIncr(b *testing.B) {
	r := NewReader(&loopReader{data: pipelinedIncr}, Limits{})
	b.ReportAllocs()
	b.SetBytes(int64(len(pipelinedIncr)))
	for b.Loop() {
		for i := 0; i < 16; i++ {
			if _, err := r.ReadCommand(); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkWriterInt is INCR's reply, flushed every 16 as a pipeline is.
func BenchmarkWriterInt(b *testing.B) {
	w := NewWriter(discard{})
	b.ReportAllocs()
	n := int64(0)
	for b.Loop() {
		n++
		w.Int(n)
		if n%16 == 0 {
			_ = w.Flush()
		}
	}
}
