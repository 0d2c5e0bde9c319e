package resp

import (
	"io"
	"strconv"
)

// Writer encodes replies. Every method appends to an internal buffer; nothing
// reaches the connection before Flush, so a pipeline's replies leave in one
// write. It is not safe for concurrent use.
type Writer struct {
	w     io.Writer
	buf   []byte
	proto int
}

// NewWriter returns a Writer speaking RESP2 until SetProtocol(3).
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, buf: make([]byte, 0, initialBuf), proto: 2}
}

// SetProtocol selects RESP2 (2) or RESP3 (3); any other value is ignored, the
// caller having checked HELLO's argument.
func (w *Writer) SetProtocol(v int) {
	if v == 2 || v == 3 {
		w.proto = v
	}
}

// Protocol returns 2 or 3.
func (w *Writer) Protocol() int { return w.proto }

func (w *Writer) header(c byte, n int64) {
	w.buf = append(w.buf, c)
	w.buf = strconv.AppendInt(w.buf, n, 10)
	w.buf = append(w.buf, '\r', '\n')
}

// SimpleString writes "+s". s must not hold CR or LF.
func (w *Writer) SimpleString(s string) {
	w.buf = append(w.buf, '+')
	w.buf = append(w.buf, s...)
	w.buf = append(w.buf, '\r', '\n')
}

// Error writes "-s", s being e.g. "ERR unknown command 'foo'". A CR or LF in s
// (an argument echoed back) becomes a space, so the reply stays one line.
func (w *Writer) Error(s string) {
	w.buf = append(w.buf, '-')
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		w.buf = append(w.buf, c)
	}
	w.buf = append(w.buf, '\r', '\n')
}

// Int writes ":n".
func (w *Writer) Int(n int64) { w.header(':', n) }

// Bulk writes b as a bulk string; nil is the empty string, not null.
func (w *Writer) Bulk(b []byte) {
	w.header('$', int64(len(b)))
	w.buf = append(w.buf, b...)
	w.buf = append(w.buf, '\r', '\n')
}

// BulkString writes s as a bulk string.
func (w *Writer) BulkString(s string) {
	w.header('$', int64(len(s)))
	w.buf = append(w.buf, s...)
	w.buf = append(w.buf, '\r', '\n')
}

// BulkInt writes the decimal of n as a bulk string (GET's answer); the digits
// are formatted on the stack, so no string is allocated.
func (w *Writer) BulkInt(n int64) {
	var tmp [20]byte
	d := strconv.AppendInt(tmp[:0], n, 10)
	w.header('$', int64(len(d)))
	w.buf = append(w.buf, d...)
	w.buf = append(w.buf, '\r', '\n')
}

// Null writes RESP2 "$-1", RESP3 "_".
func (w *Writer) Null() {
	if w.proto == 3 {
		w.buf = append(w.buf, '_', '\r', '\n')
		return
	}
	w.buf = append(w.buf, "$-1\r\n"...)
}

// NullArray writes RESP2 "*-1", RESP3 "_".
func (w *Writer) NullArray() {
	if w.proto == 3 {
		w.buf = append(w.buf, '_', '\r', '\n')
		return
	}
	w.buf = append(w.buf, "*-1\r\n"...)
}

// Array writes an array header; the caller writes n elements.
func (w *Writer) Array(n int) { w.header('*', int64(n)) }

// Map writes RESP3 "%n", RESP2 "*2n"; the caller writes n key/value pairs.
func (w *Writer) Map(n int) {
	if w.proto == 3 {
		w.header('%', int64(n))
		return
	}
	w.header('*', 2*int64(n))
}

// Set writes RESP3 "~n", RESP2 "*n"; the caller writes n elements.
func (w *Writer) Set(n int) {
	if w.proto == 3 {
		w.header('~', int64(n))
		return
	}
	w.header('*', int64(n))
}

// Verbatim writes RESP3 "=" with format "txt", RESP2 a bulk string (INFO's answer).
func (w *Writer) Verbatim(s string) {
	if w.proto != 3 {
		w.BulkString(s)
		return
	}
	w.header('=', int64(len(s)+4))
	w.buf = append(w.buf, "txt:"...)
	w.buf = append(w.buf, s...)
	w.buf = append(w.buf, '\r', '\n')
}

// Bool writes RESP3 "#t"/"#f", RESP2 the integer 1/0.
func (w *Writer) Bool(b bool) {
	switch {
	case w.proto == 3 && b:
		w.buf = append(w.buf, "#t\r\n"...)
	case w.proto == 3:
		w.buf = append(w.buf, "#f\r\n"...)
	case b:
		w.buf = append(w.buf, ":1\r\n"...)
	default:
		w.buf = append(w.buf, ":0\r\n"...)
	}
}

// Buffered returns the bytes written since the last Flush.
func (w *Writer) Buffered() int { return len(w.buf) }

// Flush writes the buffered replies to the connection. The buffer is emptied
// even on error: the connection is then unusable anyway.
func (w *Writer) Flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	_, err := w.w.Write(w.buf)
	if cap(w.buf) > shrinkAbove {
		// One large reply (INFO, a long KEYS) should not pin its buffer.
		w.buf = make([]byte, 0, initialBuf)
	} else {
		w.buf = w.buf[:0]
	}
	return err
}
