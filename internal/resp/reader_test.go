package resp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// chunkReader hands out its input in chunks of random size (1..max bytes).
type chunkReader struct {
	data []byte
	rng  *rand.Rand
	max  int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := 1 + c.rng.Intn(c.max)
	n = min(n, len(p), len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// readAll reads commands until an error, copying each (the Reader reuses its
// memory), and checks the limits hold for every command returned.
func readAll(t testing.TB, in io.Reader, lim Limits) ([][]string, error) {
	t.Helper()
	r := NewReader(in, lim)
	l := r.Limits()
	var cmds [][]string
	for {
		args, err := r.ReadCommand()
		if err != nil {
			if len(r.buf) > l.MaxQuery && len(r.buf) > initialBuf {
				t.Fatalf("buffer %d bytes over MaxQuery %d", len(r.buf), l.MaxQuery)
			}
			return cmds, err
		}
		if len(args) == 0 || len(args) > l.MaxArgs {
			t.Fatalf("command of %d args, limit %d", len(args), l.MaxArgs)
		}
		cmd := make([]string, len(args))
		for i, a := range args {
			if len(a) > l.MaxBulk {
				t.Fatalf("argument of %d bytes, limit %d", len(a), l.MaxBulk)
			}
			cmd[i] = string(a)
		}
		cmds = append(cmds, cmd)
	}
}

// readEvery reads in the three ways a connection can deliver input and
// checks they agree.
func readEvery(t *testing.T, in string, lim Limits) ([][]string, error) {
	t.Helper()
	cmds, err := readAll(t, strings.NewReader(in), lim)
	ways := map[string]io.Reader{
		"one byte":    iotest.OneByteReader(strings.NewReader(in)),
		"random 1..7": &chunkReader{data: []byte(in), rng: rand.New(rand.NewSource(int64(len(in)))), max: 7},
		"data+EOF":    iotest.DataErrReader(strings.NewReader(in)),
	}
	for name, rd := range ways {
		c, e := readAll(t, rd, lim)
		if !reflect.DeepEqual(c, cmds) || !sameErr(e, err) {
			t.Fatalf("%s: read %q, %v; whole read %q, %v", name, c, e, cmds, err)
		}
	}
	return cmds, err
}

func sameErr(a, b error) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Error() == b.Error()
}

func TestReaderValid(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want [][]string
	}{
		{"array", "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", [][]string{{"GET", "k"}}},
		{"pipeline", "*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nINCR\r\n$1\r\nc\r\n", [][]string{{"PING"}, {"INCR", "c"}}},
		{"empty bulk", "*2\r\n$4\r\nECHO\r\n$0\r\n\r\n", [][]string{{"ECHO", ""}}},
		{"binary bulk", "*2\r\n$4\r\nECHO\r\n$4\r\n\r\n\x00\xff\r\n", [][]string{{"ECHO", "\r\n\x00\xff"}}},
		{"star zero skipped", "*0\r\n*1\r\n$4\r\nPING\r\n", [][]string{{"PING"}}},
		{"star minus one skipped", "*-1\r\n*-10\r\n*1\r\n$4\r\nPING\r\n", [][]string{{"PING"}}},
		{"inline", "PING\r\n", [][]string{{"PING"}}},
		{"inline bare LF", "INCR  c\nGET c\n", [][]string{{"INCR", "c"}, {"GET", "c"}}},
		{"inline blank lines skipped", "\r\n\n   \r\nPING\r\n", [][]string{{"PING"}}},
		{"inline then array", "PING\r\n*1\r\n$4\r\nPING\r\n", [][]string{{"PING"}, {"PING"}}},
		{"CRLF after data not checked, as Redis", "*1\r\n$4\r\nPINGxx*1\r\n$1\r\nA\r\n", [][]string{{"PING"}, {"A"}}},
		{"header LF not checked, as Redis", "*1\rx$4\rxPING\r\n", [][]string{{"PING"}}},
		{"digits as data", "*1\r\n$9\r\n123456789\r\n", [][]string{{"123456789"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmds, err := readEvery(t, tc.in, Limits{})
			if err != io.EOF {
				t.Fatalf("err %v, want io.EOF", err)
			}
			if !reflect.DeepEqual(cmds, tc.want) {
				t.Fatalf("got %q, want %q", cmds, tc.want)
			}
		})
	}
}

func TestReaderInlineQuoting(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  string
	}{
		{in: `SET k "a b"`, want: []string{"SET", "k", "a b"}},
		{in: `SET k "\n\r\t\b\a\\\"\q"`, want: []string{"SET", "k", "\n\r\t\b\a\\\"q"}},
		{in: `SET k "\x41\x7a\xff\x0"`, want: []string{"SET", "k", "Az\xffx0"}},
		{in: `SET k 'it\'s "x"'`, want: []string{"SET", "k", `it's "x"`}},
		{in: `SET k 'a\nb'`, want: []string{"SET", "k", `a\nb`}},
		{in: `SET k ""`, want: []string{"SET", "k", ""}},
		{in: `SET k a"b c"d`, err: "ERR Protocol error: unbalanced quotes in request"},
		{in: `SET k a"b c"`, want: []string{"SET", "k", "ab c"}},
		{in: "SET\tk\v\f v", want: []string{"SET", "k\v\f", "v"}},
		{in: "ECHO a\x00b c", want: []string{"ECHO", "a"}},
		{in: `SET k "abc`, err: "ERR Protocol error: unbalanced quotes in request"},
		{in: `SET k 'abc`, err: "ERR Protocol error: unbalanced quotes in request"},
		{in: `SET k "abc"x`, err: "ERR Protocol error: unbalanced quotes in request"},
		{in: `SET k 'abc'x`, err: "ERR Protocol error: unbalanced quotes in request"},
		{in: `SET k "abc\`, err: "ERR Protocol error: unbalanced quotes in request"},
		{in: `SET k "a\"`, err: "ERR Protocol error: unbalanced quotes in request"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			cmds, err := readEvery(t, tc.in+"\r\n", Limits{})
			if tc.err != "" {
				var pe *ProtocolError
				if !errors.As(err, &pe) || pe.Error() != tc.err || !errors.Is(err, ErrProtocol) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != io.EOF || len(cmds) != 1 || !reflect.DeepEqual(cmds[0], tc.want) {
				t.Fatalf("got %q, %v; want %q", cmds, err, tc.want)
			}
		})
	}
}

func TestReaderErrors(t *testing.T) {
	big := func(n int) string { return strings.Repeat("1", n) }
	for _, tc := range []struct {
		name string
		in   string
		lim  Limits
		err  string
	}{
		{"count not a number", "*x\r\n", Limits{}, "ERR Protocol error: invalid multibulk length"},
		{"count with plus", "*+1\r\n", Limits{}, "ERR Protocol error: invalid multibulk length"},
		{"count with leading zero", "*01\r\n", Limits{}, "ERR Protocol error: invalid multibulk length"},
		{"count overflows", "*99999999999999999999\r\n", Limits{}, "ERR Protocol error: invalid multibulk length"},
		{"count empty", "*\r\n", Limits{}, "ERR Protocol error: invalid multibulk length"},
		{"count over 1M", "*1048577\r\n", Limits{}, "ERR Protocol error: invalid multibulk length"},
		{"count over limit", "*4\r\n", Limits{MaxArgs: 3}, "ERR Protocol error: invalid multibulk length"},
		{"bulk length 1 GiB", "*1\r\n$1073741824\r\n", Limits{}, "ERR Protocol error: invalid bulk length"},
		{"bulk length over 512 KiB", "*1\r\n$524289\r\n", Limits{}, "ERR Protocol error: invalid bulk length"},
		{"bulk length negative", "*1\r\n$-1\r\n", Limits{}, "ERR Protocol error: invalid bulk length"},
		{"bulk length not a number", "*1\r\n$a\r\n", Limits{}, "ERR Protocol error: invalid bulk length"},
		{"bulk length max int64", "*1\r\n$9223372036854775807\r\n", Limits{}, "ERR Protocol error: invalid bulk length"},
		{"nested array", "*2\r\n*1\r\n$4\r\nPING\r\n", Limits{}, "ERR Protocol error: expected '$', got '*'"},
		{"simple string element", "*1\r\n+PING\r\n", Limits{}, "ERR Protocol error: expected '$', got '+'"},
		{"data past bulk", "*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n", Limits{}, "ERR Protocol error: expected '$', got 'f'"},
		{"empty element header", "*1\r\n\r\n", Limits{}, "ERR Protocol error: expected '$', got ' '"},
		{"inline too long", strings.Repeat("A", 64<<10+1), Limits{}, "ERR Protocol error: too big inline request"},
		{"inline too long with LF", strings.Repeat("A", 100<<10) + "\r\n", Limits{}, "ERR Protocol error: too big inline request"},
		{"count line too long", "*" + big(64<<10+1), Limits{}, "ERR Protocol error: too big mbulk count string"},
		{"bulk line too long", "*1\r\n$" + big(64<<10+1), Limits{}, "ERR Protocol error: too big bulk count string"},
		{"bulk line too long before the dollar check", "*1\r\n" + strings.Repeat("X", 70000), Limits{}, "ERR Protocol error: too big bulk count string"},
		{"unauthenticated count", "*11\r\n", UnauthenticatedLimits, "ERR Protocol error: unauthenticated multibulk length"},
		{"unauthenticated huge count", "*1000000\r\n", UnauthenticatedLimits, "ERR Protocol error: unauthenticated multibulk length"},
		{"unauthenticated count over 1M", "*1048577\r\n", UnauthenticatedLimits, "ERR Protocol error: invalid multibulk length"},
		{"unauthenticated bulk", "*1\r\n$16385\r\n", UnauthenticatedLimits, "ERR Protocol error: unauthenticated bulk length"},
		{"unauthenticated 1 GiB bulk", "*1\r\n$1073741824\r\n", UnauthenticatedLimits, "ERR Protocol error: invalid bulk length"},
		{"unauthenticated inline args", "A B C D E F G H I J K\r\n", UnauthenticatedLimits, "ERR Protocol error: unauthenticated multibulk length"},
		{"unauthenticated inline arg", "ECHO " + strings.Repeat("x", 16<<10+1) + "\r\n", UnauthenticatedLimits, "ERR Protocol error: unauthenticated bulk length"},
		{"inline args over limit", "A B C D\r\n", Limits{MaxArgs: 3}, "ERR Protocol error: invalid multibulk length"},
		{"inline arg over limit", "ECHO 123456789\r\n", Limits{MaxBulk: 8}, "ERR Protocol error: invalid bulk length"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readEvery(t, tc.in, tc.lim)
			var pe *ProtocolError
			if !errors.As(err, &pe) || err.Error() != tc.err {
				t.Fatalf("err %v, want %q", err, tc.err)
			}
		})
	}
}

func TestReaderUnauthenticatedWithinLimits(t *testing.T) {
	in := "*2\r\n$4\r\nAUTH\r\n$16384\r\n" + strings.Repeat("t", 16384) + "\r\n"
	cmds, err := readEvery(t, in, UnauthenticatedLimits)
	if err != io.EOF || len(cmds) != 1 || len(cmds[0][1]) != 16384 {
		t.Fatalf("got %d commands, %v", len(cmds), err)
	}
}

func TestReaderSetLimitsAfterAuth(t *testing.T) {
	in := "*2\r\n$4\r\nAUTH\r\n$1\r\nt\r\n*11\r\n" + strings.Repeat("$1\r\na\r\n", 11)
	r := NewReader(strings.NewReader(in), UnauthenticatedLimits)
	if _, err := r.ReadCommand(); err != nil {
		t.Fatal(err)
	}
	r.SetLimits(Limits{})
	args, err := r.ReadCommand()
	if err != nil || len(args) != 11 {
		t.Fatalf("got %d args, %v", len(args), err)
	}
}

func TestReaderEOF(t *testing.T) {
	for _, tc := range []struct {
		in  string
		err error
	}{
		{"", io.EOF},
		{"*1\r\n$4\r\nPING\r\n", io.EOF},
		{"*1\r\n$4\r\nPI", io.ErrUnexpectedEOF},
		{"*1\r\n$4\r\nPING", io.ErrUnexpectedEOF},
		{"*1\r\n", io.ErrUnexpectedEOF},
		{"*1\r", io.ErrUnexpectedEOF},
		{"PING", io.ErrUnexpectedEOF},
	} {
		_, err := readEvery(t, tc.in, Limits{})
		if err != tc.err {
			t.Errorf("%q: err %v, want %v", tc.in, err, tc.err)
		}
	}
}

func TestReaderProtocolErrorIsFinal(t *testing.T) {
	r := NewReader(strings.NewReader("*x\r\n*1\r\n$4\r\nPING\r\n"), Limits{})
	_, err1 := r.ReadCommand()
	_, err2 := r.ReadCommand()
	if err1 != errInvalidMultibulk || err2 != err1 {
		t.Fatalf("errors %v then %v", err1, err2)
	}
}

func TestReaderBuffered(t *testing.T) {
	in := "*1\r\n$4\r\nPING\r\nPING\r\n"
	r := NewReader(strings.NewReader(in), Limits{})
	if _, err := r.ReadCommand(); err != nil {
		t.Fatal(err)
	}
	if got := r.Buffered(); got != len("PING\r\n") {
		t.Fatalf("Buffered %d after the first command", got)
	}
	if _, err := r.ReadCommand(); err != nil {
		t.Fatal(err)
	}
	if got := r.Buffered(); got != 0 {
		t.Fatalf("Buffered %d after the last command", got)
	}
}

// A claimed length is never allocated: only arrived bytes grow the buffer.
func TestReaderHugeClaimsAllocateNothing(t *testing.T) {
	for _, in := range []string{
		"*1\r\n$1073741824\r\n",
		"*1048577\r\n",
		"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$524288\r\nabc",
		"*1048576\r\n$1\r\na\r\n",
	} {
		r := NewReader(strings.NewReader(in), Limits{})
		_, _ = r.ReadCommand()
		if len(r.buf) > initialBuf || cap(r.offs) > 64 {
			t.Errorf("%q: buffer %d bytes, %d offsets", in, len(r.buf), cap(r.offs))
		}
	}
}

func TestReaderMaxQuery(t *testing.T) {
	in := "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100\r\n" + strings.Repeat("v", 100) + "\r\n"
	_, err := readEvery(t, in, Limits{MaxQuery: 64})
	if err != ErrQueryTooBig {
		t.Fatalf("err %v", err)
	}
	cmds, err := readEvery(t, in, Limits{MaxQuery: len(in)})
	if err != io.EOF || len(cmds) != 1 {
		t.Fatalf("got %q, %v", cmds, err)
	}
}

// After one large command the buffer goes back to its small size.
func TestReaderShrinksAfterLargeCommand(t *testing.T) {
	in := "*2\r\n$4\r\nECHO\r\n$500000\r\n" + strings.Repeat("x", 500000) + "\r\n*1\r\n$4\r\nPING\r\n"
	r := NewReader(strings.NewReader(in), Limits{})
	args, err := r.ReadCommand()
	if err != nil || len(args[1]) != 500000 {
		t.Fatal(err)
	}
	if _, err := r.ReadCommand(); err != nil {
		t.Fatal(err)
	}
	if len(r.buf) != initialBuf {
		t.Fatalf("buffer %d bytes after the large command", len(r.buf))
	}
}

func TestReaderManyArgs(t *testing.T) {
	var b strings.Builder
	n := 5000
	fmt.Fprintf(&b, "*%d\r\n", n)
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "$%d\r\n%d\r\n", len(fmt.Sprint(i)), i)
	}
	cmds, err := readEvery(t, b.String(), Limits{})
	if err != io.EOF || len(cmds) != 1 || len(cmds[0]) != n || cmds[0][n-1] != fmt.Sprint(n-1) {
		t.Fatalf("got %d commands, %v", len(cmds), err)
	}
}

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

func TestReaderSteadyStateAllocatesNothing(t *testing.T) {
	for name, in := range map[string]string{
		"array":  "*2\r\n$4\r\nINCR\r\n$20\r\ncounter:__rand_int__\r\n",
		"inline": "INCRBY \"counter:\\x41\" 5\r\n",
	} {
		r := NewReader(&loopReader{data: bytes.Repeat([]byte(in), 7)}, Limits{})
		allocs := testing.AllocsPerRun(1000, func() {
			if _, err := r.ReadCommand(); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per command", name, allocs)
		}
	}
}

func TestParseInt(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "1": 1, "-1": -1, "9223372036854775807": 1<<63 - 1, "-9223372036854775808": -1 << 63,
	} {
		if got, ok := ParseInt([]byte(in)); !ok || got != want {
			t.Errorf("%q: %d %v", in, got, ok)
		}
	}
	for _, in := range []string{"", "-", "-0", "01", "+1", " 1", "1 ", "9223372036854775808",
		"-9223372036854775809", "18446744073709551616", "99999999999999999999", "1a", "00", "1.0"} {
		if got, ok := ParseInt([]byte(in)); ok {
			t.Errorf("%q accepted as %d", in, got)
		}
	}
}
