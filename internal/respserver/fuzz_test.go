package respserver

import (
	"bytes"
	"log/slog"
	"net"
	"testing"
)

// FuzzDispatch runs arbitrary commands (NUL separates arguments, LF
// commands) through the command table against the fake service, with and
// without auth: no input may panic, and every command gets exactly one
// reply (outside MULTI) once the group is run.
func FuzzDispatch(f *testing.F) {
	for _, tc := range commandCases {
		var b []byte
		for _, st := range tc.steps {
			b = append(b, bytes.Join(toBytes(st.args), []byte{0})...)
			b = append(b, '\n')
		}
		f.Add(b, false)
	}
	f.Add([]byte("MULTI\nINCR\x00a\nGET\x00a\nEXEC\n"), false)
	f.Add([]byte("AUTH\x00read-token-0123456789\nINCR\x00a\nRESET\nHELLO\x003\x00AUTH\x00ops\x00admin-token-0123456789\n"), true)
	f.Fuzz(func(t *testing.T, in []byte, withAuth bool) {
		cfg := Config{Service: newFake(), Log: slog.New(slog.DiscardHandler)}
		if withAuth {
			cfg.Auth = testTokens
		}
		s := New(cfg)
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		c := newConn(s, a)
		for _, line := range bytes.Split(in, []byte{'\n'}) {
			args := bytes.Split(line, []byte{0})
			if len(args[0]) == 0 {
				continue
			}
			c.dispatch(args)
			c.runGroup()
			if c.quit {
				break
			}
		}
	})
}

func toBytes(ss []string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}
