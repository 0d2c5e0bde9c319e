package transport

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// HandshakeVersion is the handshake version this package speaks.
const HandshakeVersion = 1

const (
	magic = "DCNT"
	// MaxClusterLen is the longest cluster name.
	MaxClusterLen = 64
	// MaxAddrLen is the longest advertise address.
	MaxAddrLen = 255
	// maxReasonLen is the longest reason in an answer.
	maxReasonLen = 255
	// maxHandshakeFrame bounds handshake frame bodies, whatever MaxFrame
	// says, so an unauthenticated connection cannot make us allocate much.
	// The largest sealed Hello or answer is under 360 bytes.
	maxHandshakeFrame = 512
)

// answerCode is the acceptor's verdict on a Hello.
type answerCode uint8

// Answer codes. ONLY APPEND TO THIS LIST: the numbers are on the wire.
const (
	codeOK           answerCode = 0
	codeWrongCluster answerCode = 1
	codeBadVersion   answerCode = 2
	codeAuthFailed   answerCode = 3
	codeBadHello     answerCode = 4
)

func (c answerCode) String() string {
	switch c {
	case codeOK:
		return "ok"
	case codeWrongCluster:
		return "wrong cluster"
	case codeBadVersion:
		return "unsupported version"
	case codeAuthFailed:
		return "authentication failed"
	case codeBadHello:
		return "bad hello"
	}
	return fmt.Sprintf("code(%d)", uint8(c))
}

// err maps a refusal to the sentinel the dialer reports.
func (c answerCode) err() error {
	switch c {
	case codeWrongCluster:
		return ErrWrongCluster
	case codeBadVersion:
		return ErrVersion
	case codeAuthFailed:
		return ErrAuth
	}
	return ErrHandshake
}

// hello is the dialer's first frame.
type hello struct {
	version uint8
	cluster string
	addr    string
}

// answer is the acceptor's reply to a Hello.
type answer struct {
	code    answerCode
	cluster string
	reason  string
}

func appendHello(dst []byte, h hello) []byte {
	dst = append(dst, magic...)
	dst = append(dst, h.version, byte(len(h.cluster)))
	dst = append(dst, h.cluster...)
	dst = append(dst, byte(len(h.addr)))
	return append(dst, h.addr...)
}

// parseHello decodes a Hello body. A Hello of another version is reported
// as ErrVersion with the version filled in, without looking further: its
// layout may differ.
func parseHello(b []byte) (hello, error) {
	var h hello
	if len(b) < len(magic)+1 || string(b[:len(magic)]) != magic {
		return h, fmt.Errorf("%w: not a hello (bad magic)", ErrHandshake)
	}
	h.version = b[len(magic)]
	if h.version != HandshakeVersion {
		return h, fmt.Errorf("%w: peer speaks version %d, this node %d", ErrVersion, h.version, HandshakeVersion)
	}
	rest := b[len(magic)+1:]
	cluster, rest, ok := cutString(rest)
	if !ok || len(cluster) == 0 || len(cluster) > MaxClusterLen {
		return h, fmt.Errorf("%w: bad cluster name", ErrHandshake)
	}
	addr, rest, ok := cutString(rest)
	if !ok || len(addr) == 0 {
		return h, fmt.Errorf("%w: bad advertise address", ErrHandshake)
	}
	if len(rest) != 0 {
		return h, fmt.Errorf("%w: %d trailing bytes after hello", ErrHandshake, len(rest))
	}
	h.cluster, h.addr = cluster, addr
	return h, nil
}

func appendAnswer(dst []byte, a answer) []byte {
	reason := a.reason
	if len(reason) > maxReasonLen {
		reason = reason[:maxReasonLen]
	}
	dst = append(dst, magic...)
	dst = append(dst, HandshakeVersion, byte(a.code), byte(len(a.cluster)))
	dst = append(dst, a.cluster...)
	dst = append(dst, byte(len(reason)))
	return append(dst, reason...)
}

// parseAnswer decodes an answer body; its layout is the same in every
// handshake version.
func parseAnswer(b []byte) (answer, error) {
	var a answer
	if len(b) < len(magic)+2 || string(b[:len(magic)]) != magic {
		return a, fmt.Errorf("%w: not an answer (bad magic)", ErrHandshake)
	}
	a.code = answerCode(b[len(magic)+1])
	rest := b[len(magic)+2:]
	cluster, rest, ok := cutString(rest)
	if !ok || len(cluster) > MaxClusterLen {
		return a, fmt.Errorf("%w: bad cluster name in answer", ErrHandshake)
	}
	reason, rest, ok := cutString(rest)
	if !ok || len(rest) != 0 {
		return a, fmt.Errorf("%w: bad reason in answer", ErrHandshake)
	}
	a.cluster, a.reason = cluster, reason
	return a, nil
}

// cutString splits a one-byte-length-prefixed string off the front of b.
func cutString(b []byte) (s string, rest []byte, ok bool) {
	if len(b) < 1 || len(b)-1 < int(b[0]) {
		return "", b, false
	}
	n := int(b[0])
	return string(b[1 : 1+n]), b[1+n:], true
}

// handshakeConn is what a handshake needs from a connection; net.Conn has it.
type handshakeConn interface {
	io.ReadWriter
	SetDeadline(t time.Time) error
}

// handshakeError is a failed handshake: the error plus what the acceptor
// should answer and how loudly to log it.
type handshakeError struct {
	err  error
	code answerCode
	// quiet marks failures that are not worth a warning: a connection that
	// sent nothing, or went away.
	quiet bool
	// plainAnswer sends the answer unsealed, because the dialer could not
	// have sealed its Hello with our key and cannot open a sealed answer.
	plainAnswer bool
}

func (e *handshakeError) Error() string { return e.err.Error() }
func (e *handshakeError) Unwrap() error { return e.err }

// acceptHello reads and checks a dialer's Hello. It returns the Hello, or a
// *handshakeError saying what to answer; it writes nothing.
func (t *TCP) acceptHello(c handshakeConn) (hello, error) {
	fr := frameReader{r: c, max: maxHandshakeFrame}
	body, err := fr.readBody()
	if err != nil {
		switch {
		case errors.Is(err, io.EOF):
			return hello{}, &handshakeError{err: fmt.Errorf("%w: connection closed before the hello: %w", ErrHandshake, io.EOF), quiet: true}
		case isTimeout(err):
			return hello{}, &handshakeError{err: fmt.Errorf("%w: no hello within %v", ErrHandshake, t.cfg.HandshakeTimeout), quiet: true}
		case errors.Is(err, ErrFrameTooLarge), errors.Is(err, ErrEmptyFrame):
			return hello{}, &handshakeError{err: fmt.Errorf("%w: first frame is not a hello: %w", ErrHandshake, err), code: codeBadHello, plainAnswer: true}
		}
		return hello{}, &handshakeError{err: fmt.Errorf("%w: reading hello: %w", ErrHandshake, err), code: codeBadHello, plainAnswer: true}
	}

	plain := body
	if t.seal != nil {
		// Look before opening: a failed open may clobber the body.
		_, plainErr := parseHello(body)
		if plain, err = t.seal.open(fr.hdr[:], body); err != nil {
			if plainErr == nil {
				err = fmt.Errorf("%w: plaintext hello, but the accepting node requires encryption (the dialing node has no key)", ErrAuth)
			} else {
				err = fmt.Errorf("%w: hello did not open with the accepting node's key (the nodes have different keys, or the dialer is not a dcounter node)", ErrAuth)
			}
			return hello{}, &handshakeError{err: err, code: codeAuthFailed, plainAnswer: true}
		}
	}

	h, err := parseHello(plain)
	if err != nil {
		code := codeBadHello
		if errors.Is(err, ErrVersion) {
			code = codeBadVersion
		} else if t.seal == nil && len(plain) >= sealOverhead+len(magic) && !bytes.HasPrefix(plain, []byte(magic)) {
			err = fmt.Errorf("%w (if the dialing node has an encryption key, the accepting node needs the same one)", err)
		}
		return h, &handshakeError{err: err, code: code, plainAnswer: t.seal == nil}
	}
	if h.cluster != t.cfg.Cluster {
		return h, &handshakeError{
			err:  fmt.Errorf("%w: peer is in cluster %q, this node in %q", ErrWrongCluster, h.cluster, t.cfg.Cluster),
			code: codeWrongCluster,
		}
	}
	return h, nil
}

// reasonText is err's message without its sentinel prefix, for an answer.
func reasonText(err error) string {
	s := err.Error()
	for _, sentinel := range []error{ErrHandshake, ErrAuth, ErrVersion, ErrWrongCluster} {
		if p := sentinel.Error() + ": "; strings.HasPrefix(s, p) {
			return s[len(p):]
		}
	}
	return s
}

// writeAnswer sends the acceptor's reply.
func (t *TCP) writeAnswer(c io.Writer, a answer, plain bool) error {
	a.cluster = t.cfg.Cluster
	body := appendAnswer(make([]byte, 0, 64), a)
	var frame []byte
	if t.seal != nil && !plain {
		frame = t.seal.sealFrame(nil, body)
	} else {
		frame = appendFrame(nil, body)
	}
	_, err := c.Write(frame)
	return err
}

// dialHandshake sends our Hello on a fresh outbound connection and waits for
// the answer. It returns nil when the peer accepted us.
func (t *TCP) dialHandshake(c handshakeConn) error {
	if err := c.SetDeadline(time.Now().Add(t.cfg.HandshakeTimeout)); err != nil {
		return err
	}
	body := appendHello(make([]byte, 0, 64), hello{version: HandshakeVersion, cluster: t.cfg.Cluster, addr: t.addr})
	var frame []byte
	if t.seal != nil {
		frame = t.seal.sealFrame(nil, body)
	} else {
		frame = appendFrame(nil, body)
	}
	if _, err := c.Write(frame); err != nil {
		return fmt.Errorf("sending hello: %w", err)
	}

	fr := frameReader{r: c, max: maxHandshakeFrame}
	body, err := fr.readBody()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: peer closed the connection without answering the hello", ErrHandshake)
		}
		if errors.Is(err, ErrFrameTooLarge) || errors.Is(err, ErrEmptyFrame) {
			return fmt.Errorf("%w: bad answer: %w", ErrHandshake, err)
		}
		return fmt.Errorf("waiting for the answer: %w", err)
	}
	plain := body
	if t.seal != nil {
		unsealed, perr := parseAnswer(body) // before open: a failed open may clobber body
		if plain, err = t.seal.open(fr.hdr[:], body); err != nil {
			switch {
			case perr != nil:
				return fmt.Errorf("%w: answer did not open with this node's key (the peer has a different key)", ErrAuth)
			case unsealed.code == codeOK:
				return fmt.Errorf("%w: peer answered in plaintext: it has no encryption key configured", ErrAuth)
			default:
				return fmt.Errorf("%w: peer refused the hello (%s, unauthenticated answer): %s", unsealed.code.err(), unsealed.code, unsealed.reason)
			}
		}
	}
	a, err := parseAnswer(plain)
	if err != nil {
		if t.seal == nil {
			return fmt.Errorf("%w (if the accepting node has an encryption key, the dialing node needs the same one)", err)
		}
		return err
	}
	switch {
	case a.code != codeOK:
		if a.code == codeWrongCluster {
			return fmt.Errorf("%w: peer is in cluster %q, this node in %q", ErrWrongCluster, a.cluster, t.cfg.Cluster)
		}
		return fmt.Errorf("%w: peer refused the hello (%s): %s", a.code.err(), a.code, a.reason)
	case a.cluster != t.cfg.Cluster:
		return fmt.Errorf("%w: peer accepted but says it is in cluster %q, this node in %q", ErrWrongCluster, a.cluster, t.cfg.Cluster)
	}
	return c.SetDeadline(time.Time{})
}
