package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

const (
	// frameHeaderLen is the size of a frame's length prefix.
	frameHeaderLen = 4
	// DefaultMaxFrame is the default limit on a frame body.
	DefaultMaxFrame = 32 << 20
	// minMaxFrame is the smallest MaxFrame accepted: room for a sealed
	// payload of a few bytes.
	minMaxFrame = 64
	// maxMaxFrame keeps every length a valid uint32 and an int on 32-bit
	// platforms.
	maxMaxFrame = 1 << 30
	// readChunk is how much of a body the reader allocates before any of it
	// has arrived; it then doubles as bytes arrive. Bodies up to this size
	// (the common case: 64 KiB of payload, sealed or not) are read with a
	// single allocation.
	readChunk = 64<<10 + sealOverhead
	// keepBuf is the largest read buffer a connection keeps between frames.
	keepBuf = readChunk
)

// frameReader reads frames from a stream. It never allocates a body larger
// than max, and allocates for a large body only as fast as its bytes arrive.
type frameReader struct {
	r   io.Reader
	max int
	// seal opens each body when set (with the session key of the
	// connection's direction); nil reads plaintext frames.
	seal *sealer
	hdr  [frameHeaderLen]byte
	buf  []byte
}

// next returns the next frame's payload: its body, opened when the reader
// has a sealer. The payload is valid until the following call. Errors:
// io.EOF at a clean end of stream (between frames), io.ErrUnexpectedEOF for
// a truncated frame, ErrEmptyFrame, ErrFrameTooLarge, ErrAuth, or the
// underlying reader's error.
func (fr *frameReader) next() ([]byte, error) {
	body, err := fr.readBody()
	if err != nil {
		return nil, err
	}
	if fr.seal == nil {
		return body, nil
	}
	pt, err := fr.seal.open(fr.hdr[:], body)
	if err != nil {
		return nil, err
	}
	if len(pt) == 0 {
		return nil, fmt.Errorf("%w: sealed frame has no payload", ErrEmptyFrame)
	}
	return pt, nil
}

// readBody reads one frame and returns its raw body; fr.hdr holds its
// length prefix afterwards (the additional data for opening a sealed body).
func (fr *frameReader) readBody() ([]byte, error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(fr.hdr[:])
	if n == 0 {
		return nil, ErrEmptyFrame
	}
	if uint64(n) > uint64(fr.max) {
		return nil, fmt.Errorf("%w: length prefix %d exceeds limit %d", ErrFrameTooLarge, n, fr.max)
	}
	if cap(fr.buf) > keepBuf {
		fr.buf = nil // let the last large body go
	}
	body, err := readFull(fr.r, fr.buf[:0], int(n))
	if cap(body) <= keepBuf {
		fr.buf = body
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return body, nil
}

// readFull reads exactly n bytes into buf (which must be empty), growing it
// by doubling from readChunk so that memory follows the bytes received
// rather than the length the peer announced.
func readFull(r io.Reader, buf []byte, n int) ([]byte, error) {
	if n <= cap(buf) {
		buf = buf[:n]
		_, err := io.ReadFull(r, buf)
		return buf, err
	}
	for len(buf) < n {
		want := min(n-len(buf), max(readChunk, len(buf)))
		if cap(buf)-len(buf) < want {
			nb := make([]byte, len(buf), len(buf)+want)
			copy(nb, buf)
			buf = nb
		}
		m, err := io.ReadFull(r, buf[len(buf):len(buf)+want])
		buf = buf[:len(buf)+m]
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// appendFrame appends a plaintext frame carrying body to dst.
func appendFrame(dst, body []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(body)))
	return append(dst, body...)
}
