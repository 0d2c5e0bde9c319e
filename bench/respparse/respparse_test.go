// Package respparse compares internal/resp's command Reader with
// github.com/tidwall/redcon's on the same pipelined input. It is a module of
// its own so that redcon never enters dcounter's go.mod. Run:
//
//	cd bench/respparse && go test -bench . -benchmem
package respparse

import (
	"bytes"
	"testing"

	"github.com/dcounter/dcounter/internal/resp"
	"github.com/tidwall/redcon"
)

// pipelined is what redis-benchmark -t incr -P 16 sends: 16 INCRs per write.
var pipelined = bytes.Repeat([]byte("*2\r\n$4\r\nINCR\r\n$20\r\ncounter:__rand_int__\r\n"), 16)

// loopReader serves the same bytes forever, as a busy pipelining client does.
type loopReader struct {
	data []byte
	off  int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := copy(p, l.data[l.off:])
	l.off = (l.off + n) % len(l.data)
	return n, nil
}

// Each iteration reads the 16 commands of one pipelined buffer.

func BenchmarkDcounterResp(b *testing.B) {
	r := resp.NewReader(&loopReader{data: pipelined}, resp.Limits{})
	b.ReportAllocs()
	b.SetBytes(int64(len(pipelined)))
	for b.Loop() {
		for i := 0; i < 16; i++ {
			args, err := r.ReadCommand()
			if err != nil || len(args) != 2 {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkRedcon(b *testing.B) {
	r := redcon.NewReader(&loopReader{data: pipelined})
	b.ReportAllocs()
	b.SetBytes(int64(len(pipelined)))
	for b.Loop() {
		for i := 0; i < 16; i++ {
			cmd, err := r.ReadCommand()
			if err != nil || len(cmd.Args) != 2 {
				b.Fatal(err)
			}
		}
	}
}
