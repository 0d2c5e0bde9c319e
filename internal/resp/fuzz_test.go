package resp

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strconv"
	"testing"
	"testing/iotest"
)

// fuzzLimits picks the limits a fuzzed input is read under, so that every
// limit's edge is within reach of short inputs.
func fuzzLimits(sel uint8) Limits {
	switch sel % 4 {
	case 1:
		return UnauthenticatedLimits
	case 2:
		return Limits{MaxArgs: 3, MaxBulk: 8, MaxInline: 16, MaxQuery: 64}
	case 3:
		return Limits{MaxArgs: 2, MaxBulk: 3, MaxInline: 5, MaxQuery: 12}
	default:
		return Limits{}
	}
}

// splitReader returns data[:at] then the rest, as two reads.
type splitReader struct {
	data []byte
	at   int
}

func (s *splitReader) Read(p []byte) (int, error) {
	if len(s.data) == 0 {
		return 0, io.EOF
	}
	n := len(s.data)
	if s.at > 0 && s.at < n {
		n = s.at
	}
	n = copy(p, s.data[:n])
	s.data = s.data[n:]
	s.at -= n
	return n, nil
}

func fuzzSeeds(f *testing.F) {
	for _, s := range []string{
		"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
		"*1\r\n$4\r\nPING\r\nPING\r\n*0\r\n*-1\r\n",
		"*2\r\n*1\r\n$4\r\nPING\r\n",
		"*1\r\n*1\r\n*1\r\n$1\r\na\r\n",
		"*1\r\n$1073741824\r\n",
		"*1\r\n$9223372036854775807\r\n",
		"*1\r\n$-1\r\n",
		"*-9223372036854775808\r\n",
		"*1048577\r\n",
		"*2147483648\r\n",
		"*11\r\n$1\r\na\r\n",
		"*1\r\n$16385\r\n",
		"SET k \"a\\x41\\n\" 'b\\'c'\r\n",
		"SET k \"unbalanced\r\n",
		"SET k 'x'y\r\n",
		"\r\n\n \nPING\n",
		"*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n",
		"*1\rx$4\rxPING\r\n",
		"*1\r\n\r\n",
		"ECHO a\x00b\r\n",
	} {
		for sel := uint8(0); sel < 4; sel++ {
			f.Add([]byte(s), uint16(len(s)/2), sel)
		}
	}
}

// FuzzReader reads arbitrary bytes whole, split at a fuzzed point, and one
// byte at a time: it must never panic, never return a command over the
// limits, and the three reads must agree.
func FuzzReader(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte, at uint16, sel uint8) {
		lim := fuzzLimits(sel)
		whole, werr := readAll(t, bytes.NewReader(data), lim)
		split, serr := readAll(t, &splitReader{data: data, at: int(at)}, lim)
		if !reflect.DeepEqual(whole, split) || !sameErr(werr, serr) {
			t.Fatalf("whole: %q, %v; split at %d: %q, %v", whole, werr, at, split, serr)
		}
		if len(data) <= 256 {
			one, oerr := readAll(t, iotest.OneByteReader(bytes.NewReader(data)), lim)
			if !reflect.DeepEqual(whole, one) || !sameErr(werr, oerr) {
				t.Fatalf("whole: %q, %v; one byte at a time: %q, %v", whole, werr, one, oerr)
			}
		}
		var pe *ProtocolError
		if werr != io.EOF && werr != io.ErrUnexpectedEOF && werr != ErrQueryTooBig && !errors.As(werr, &pe) {
			t.Fatalf("unexpected error %v", werr)
		}
	})
}

// FuzzRoundTrip encodes arbitrary argument lists as a RESP array and as an
// inline command with every byte escaped, and reads them back.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte("SET k 1"), byte(' '), uint16(3))
	f.Add([]byte("INCR counter:__rand_int__"), byte(' '), uint16(1))
	f.Add([]byte("a\r\nb\x00c\"d'e"), byte('\n'), uint16(0))
	f.Add([]byte(""), byte(' '), uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, sep byte, at uint16) {
		if len(data) > 64<<10 {
			return // long inputs add only time: the limits are FuzzReader's job
		}
		parts := bytes.Split(data, []byte{sep})
		want := make([]string, len(parts))
		for i, p := range parts {
			want[i] = string(p)
		}

		var enc bytes.Buffer
		w := NewWriter(&enc)
		w.Array(len(parts))
		for _, p := range parts {
			w.Bulk(p)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		// Inline: every byte as \xHH inside double quotes, when the line
		// fits the inline limit.
		var line bytes.Buffer
		for i, p := range parts {
			if i > 0 {
				line.WriteByte(' ')
			}
			line.WriteByte('"')
			for _, c := range p {
				line.WriteString(`\x`)
				line.WriteString(strconv.FormatUint(uint64(c)>>4, 16))
				line.WriteString(strconv.FormatUint(uint64(c)&15, 16))
			}
			line.WriteByte('"')
		}
		wantCmds := [][]string{want}
		if line.Len() <= DefaultMaxInline {
			enc.WriteString("\r\n\r\n") // blank lines are skipped
			enc.Write(line.Bytes())
			enc.WriteString("\n")
			wantCmds = append(wantCmds, want)
		}

		got, err := readAll(t, &splitReader{data: enc.Bytes(), at: int(at)}, Limits{})
		if err != io.EOF || !reflect.DeepEqual(got, wantCmds) {
			t.Fatalf("encoded %q, read %q, %v; want %q", enc.Bytes(), got, err, wantCmds)
		}
	})
}
