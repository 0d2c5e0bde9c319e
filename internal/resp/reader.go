package resp

import (
	"bytes"
	"errors"
	"io"
)

// Limits bound what a Reader accepts; zero fields take the defaults.
type Limits struct {
	MaxArgs   int // elements in one command array; default 1024*1024 (Redis: "invalid multibulk length")
	MaxBulk   int // bytes in one bulk argument; default 512 KiB ("invalid bulk length")
	MaxInline int // bytes in one inline command line; default 64 KiB ("too big inline request")
	MaxQuery  int // bytes in one whole command; default 1 GiB (ErrQueryTooBig, closed without a reply)

	// unauthenticated selects Redis's "unauthenticated ..." texts for counts
	// over MaxArgs/MaxBulk that the default limits would have accepted.
	unauthenticated bool
}

// Defaults of Limits.
const (
	DefaultMaxArgs   = 1024 * 1024
	DefaultMaxBulk   = 512 << 10
	DefaultMaxInline = 64 << 10
	DefaultMaxQuery  = 1 << 30
)

// UnauthenticatedLimits are Redis's tighter limits before AUTH: 10 args, 16 KiB bulk
// ("Protocol error: unauthenticated multibulk length" / "unauthenticated bulk length").
var UnauthenticatedLimits = Limits{MaxArgs: 10, MaxBulk: 16 << 10, unauthenticated: true}

// Unauthenticated reports whether l are limits for a connection that has not
// authenticated (UnauthenticatedLimits).
func (l Limits) Unauthenticated() bool { return l.unauthenticated }

// withDefaults fills zero fields.
func (l Limits) withDefaults() Limits {
	if l.MaxArgs <= 0 {
		l.MaxArgs = DefaultMaxArgs
	}
	if l.MaxBulk <= 0 {
		l.MaxBulk = DefaultMaxBulk
	}
	if l.MaxInline <= 0 {
		l.MaxInline = DefaultMaxInline
	}
	if l.MaxQuery <= 0 {
		l.MaxQuery = DefaultMaxQuery
	}
	return l
}

// ErrProtocol is what every *ProtocolError matches with errors.Is.
var ErrProtocol = errors.New("resp: protocol error")

// ErrQueryTooBig is returned when one command outgrows Limits.MaxQuery. Like
// Redis, the server closes the connection without a reply.
var ErrQueryTooBig = errors.New("resp: query buffer limit reached")

// ProtocolError is a malformed or refused command. Its Error is Redis's exact
// reply text (without "-" and CRLF), to be sent before closing the connection.
type ProtocolError struct{ text string }

func (e *ProtocolError) Error() string { return e.text }

// Unwrap makes errors.Is(err, ErrProtocol) true.
func (e *ProtocolError) Unwrap() error { return ErrProtocol }

var (
	errInvalidMultibulk = &ProtocolError{"ERR Protocol error: invalid multibulk length"}
	errInvalidBulk      = &ProtocolError{"ERR Protocol error: invalid bulk length"}
	errTooBigInline     = &ProtocolError{"ERR Protocol error: too big inline request"}
	errTooBigMbulk      = &ProtocolError{"ERR Protocol error: too big mbulk count string"}
	errTooBigBulk       = &ProtocolError{"ERR Protocol error: too big bulk count string"}
	errUnauthMultibulk  = &ProtocolError{"ERR Protocol error: unauthenticated multibulk length"}
	errUnauthBulk       = &ProtocolError{"ERR Protocol error: unauthenticated bulk length"}
	errUnbalanced       = &ProtocolError{"ERR Protocol error: unbalanced quotes in request"}
)

func errExpectedDollar(c byte) error {
	if c == '\r' || c == '\n' {
		c = ' ' // as Redis's addReplyErrorFormat, which keeps the reply one line
	}
	return &ProtocolError{"ERR Protocol error: expected '$', got '" + string([]byte{c}) + "'"}
}

const (
	initialBuf = 4 << 10
	// shrinkAbove: a buffer grown past this for one large command is given
	// back at the next command boundary, so an idle connection holds little.
	shrinkAbove = 64 << 10
	// argsKeep: an argument table grown past this is given back likewise.
	argsKeep = 1024
)

const (
	kindNone = iota
	kindInline
	kindMulti
)

// Reader reads commands from a client connection. It is not safe for
// concurrent use.
type Reader struct {
	rd  io.Reader
	lim Limits

	buf  []byte // len(buf) == cap(buf); buf[r:w] is read and not yet consumed
	r, w int

	// State of the command being parsed; offsets are relative to r, so
	// moving the data to the front of buf changes none of them.
	kind      int
	pos       int   // next byte to parse
	scan      int   // a line end was searched for, and is absent, before here
	remaining int   // elements of the array still to read
	bulklen   int   // length of the element being read, -1 before its header
	offs      []int // start, end pairs of the arguments read so far

	args [][]byte
	err  error // a protocol error is final
}

// NewReader returns a Reader reading commands from r under lim.
func NewReader(r io.Reader, lim Limits) *Reader {
	return &Reader{rd: r, lim: lim.withDefaults(), bulklen: -1}
}

// SetLimits changes the limits from the next header read on (after AUTH, the
// server lifts UnauthenticatedLimits).
func (r *Reader) SetLimits(lim Limits) { r.lim = lim.withDefaults() }

// Limits returns the limits in force, defaults filled in.
func (r *Reader) Limits() Limits { return r.lim }

// Buffered returns the bytes already read from the connection and not yet parsed: >0 means more pipelined
// commands are waiting, so replies should not be flushed yet.
func (r *Reader) Buffered() int { return r.w - r.r }

// ReadCommand returns the next command's arguments (args[0] is the command name, as sent). The slices
// are valid until the next ReadCommand. An empty inline line is skipped (as Redis does). A protocol error
// is a *ProtocolError whose Error() is Redis's exact text, e.g. "ERR Protocol error: invalid bulk length";
// after it the connection must be answered with that error and closed (as Redis does). io.EOF at a
// command boundary is a clean close; io.ErrUnexpectedEOF inside a command.
func (r *Reader) ReadCommand() ([][]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	r.release()
	for {
		done, err := r.parse()
		if err != nil {
			r.err = err
			return nil, err
		}
		if done {
			n := len(r.offs) / 2
			if n == 0 { // "*0", "*-1" or a blank line: nothing to run
				r.consume()
				continue
			}
			args := r.args[:0]
			for i := 0; i < n; i++ {
				args = append(args, r.buf[r.r+r.offs[2*i]:r.r+r.offs[2*i+1]:r.r+r.offs[2*i+1]])
			}
			r.args = args
			r.consume()
			return args, nil
		}
		if err := r.fill(); err != nil {
			if err == ErrQueryTooBig {
				r.err = err
			}
			return nil, err
		}
	}
}

// release drops the previous command's memory if it was unusually large; its
// arguments are no longer valid, so the buffer may move.
func (r *Reader) release() {
	if r.r == r.w {
		r.r, r.w = 0, 0
	}
	if len(r.buf) > shrinkAbove && r.w-r.r <= initialBuf {
		nb := make([]byte, initialBuf)
		r.w = copy(nb, r.buf[r.r:r.w])
		r.r = 0
		r.buf = nb
	}
	if cap(r.args) > argsKeep {
		r.args = nil
	}
	if cap(r.offs) > 2*argsKeep {
		r.offs = nil
	}
}

// consume ends the current command.
func (r *Reader) consume() {
	r.r += r.pos
	r.kind, r.pos, r.scan, r.remaining, r.bulklen = kindNone, 0, 0, 0, -1
	r.offs = r.offs[:0]
}

// fill reads more input, making room first: the unparsed bytes move to the
// front, or the buffer doubles. It grows only for bytes that arrive.
func (r *Reader) fill() error {
	if r.w == len(r.buf) {
		switch {
		case r.r > 0:
			r.w = copy(r.buf, r.buf[r.r:r.w])
			r.r = 0
		case len(r.buf) >= r.lim.MaxQuery:
			return ErrQueryTooBig
		default:
			n := 2 * len(r.buf)
			if n < initialBuf {
				n = initialBuf
			}
			if n > r.lim.MaxQuery {
				n = r.lim.MaxQuery
			}
			nb := make([]byte, n)
			r.w = copy(nb, r.buf[r.r:r.w])
			r.r = 0
			r.buf = nb
		}
	}
	for empty := 0; empty < 100; empty++ {
		n, err := r.rd.Read(r.buf[r.w:])
		r.w += n
		if n > 0 {
			return nil // a read error comes back with the next read
		}
		if err != nil {
			if err == io.EOF && r.w > r.r {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return io.ErrNoProgress
}

// parse advances the current command over the buffered bytes. It returns
// done when the command is complete, false when it needs more input.
func (r *Reader) parse() (done bool, err error) {
	data := r.buf[r.r:r.w]
	if r.kind == kindNone {
		if len(data) == 0 {
			return false, nil
		}
		if data[0] == '*' {
			r.kind = kindMulti
		} else {
			r.kind = kindInline
		}
	}
	if r.kind == kindInline {
		return r.parseInline(data)
	}
	if r.remaining == 0 {
		line, ok, err := r.line(data, errTooBigMbulk)
		if !ok || err != nil {
			return false, err
		}
		n, ok := ParseInt(line[1:])
		switch {
		case !ok || n > int64(r.maxArgs()):
			return false, errInvalidMultibulk
		case n > int64(r.lim.MaxArgs):
			return false, errUnauthMultibulk
		case n <= 0:
			return true, nil
		}
		r.remaining = int(n)
	}
	for r.remaining > 0 {
		if r.bulklen < 0 {
			line, ok, err := r.line(data, errTooBigBulk)
			if !ok || err != nil {
				return false, err
			}
			if line[0] != '$' {
				return false, errExpectedDollar(line[0])
			}
			n, ok := ParseInt(line[1:])
			switch {
			case !ok || n < 0 || n > int64(r.maxBulk()):
				return false, errInvalidBulk
			case n > int64(r.lim.MaxBulk):
				return false, errUnauthBulk
			}
			r.bulklen = int(n)
		}
		// The CRLF after the data is skipped unread, as Redis does.
		if len(data)-r.pos < r.bulklen+2 {
			return false, nil
		}
		r.offs = append(r.offs, r.pos, r.pos+r.bulklen)
		r.pos += r.bulklen + 2
		r.scan = r.pos
		r.bulklen = -1
		r.remaining--
	}
	return true, nil
}

// line returns the header line at pos, up to its '\r', and moves pos past
// the byte after the '\r' (Redis does not check that it is '\n'). ok is
// false when the line is not complete yet. A line longer than MaxInline is
// refused whether or not its end has arrived, so that how the input is split
// never changes the outcome.
func (r *Reader) line(data []byte, tooBig error) (line []byte, ok bool, err error) {
	from := r.scan
	if from < r.pos {
		from = r.pos
	}
	i := bytes.IndexByte(data[from:], '\r')
	if i < 0 {
		r.scan = len(data)
		if len(data)-r.pos > r.lim.MaxInline {
			return nil, false, tooBig
		}
		return nil, false, nil
	}
	end := from + i
	if end-r.pos > r.lim.MaxInline {
		return nil, false, tooBig
	}
	r.scan = end
	if end+1 >= len(data) {
		return nil, false, nil
	}
	line = data[r.pos:end]
	if len(line) == 0 {
		// Only possible for an element header: "\r" where '$' belongs.
		return nil, false, errExpectedDollar('\r')
	}
	r.pos = end + 2
	r.scan = r.pos
	return line, true, nil
}

// maxArgs and maxBulk are the bounds past which a count is invalid rather
// than merely unauthenticated.
func (r *Reader) maxArgs() int {
	if r.lim.unauthenticated && r.lim.MaxArgs < DefaultMaxArgs {
		return DefaultMaxArgs
	}
	return r.lim.MaxArgs
}

func (r *Reader) maxBulk() int {
	if r.lim.unauthenticated && r.lim.MaxBulk < DefaultMaxBulk {
		return DefaultMaxBulk
	}
	return r.lim.MaxBulk
}

// parseInline splits one inline line once its '\n' has arrived.
func (r *Reader) parseInline(data []byte) (bool, error) {
	i := bytes.IndexByte(data[r.scan:], '\n')
	if i < 0 {
		r.scan = len(data)
		if len(data) > r.lim.MaxInline {
			return false, errTooBigInline
		}
		return false, nil
	}
	end := r.scan + i
	if end > r.lim.MaxInline {
		return false, errTooBigInline
	}
	r.pos = end + 1
	line := data[:end]
	if end > 0 && line[end-1] == '\r' {
		line = line[:end-1]
	}
	// Redis splits a C string: a NUL byte ends the line.
	if j := bytes.IndexByte(line, 0); j >= 0 {
		line = line[:j]
	}
	offs, err := splitArgs(line, r.offs[:0])
	r.offs = offs
	if err != nil {
		return false, err
	}
	if n := len(offs) / 2; n > r.lim.MaxArgs {
		if r.lim.unauthenticated {
			return false, errUnauthMultibulk
		}
		return false, errInvalidMultibulk
	}
	for k := 0; k < len(offs); k += 2 {
		if offs[k+1]-offs[k] > r.lim.MaxBulk {
			if r.lim.unauthenticated {
				return false, errUnauthBulk
			}
			return false, errInvalidBulk
		}
	}
	return true, nil
}
