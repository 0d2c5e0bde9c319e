package transport

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/dcounter/dcounter/internal/clusterkey"
)

// HandshakeVersion is the handshake version this package speaks. Version 1
// sealed every frame with the cluster key itself; version 2 runs a Noise
// handshake per connection.
const HandshakeVersion = 2

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
	// The largest handshake frame, a sealed answer, is under 360 bytes.
	maxHandshakeFrame = 512
	// openingHeaderLen is magic, version and mode.
	openingHeaderLen = len(magic) + 2
	// keyedOpeningLen is the whole opening in keyed mode: header, key ID,
	// Noise message 1.
	keyedOpeningLen = openingHeaderLen + len(clusterkey.ID{}) + msg1Len
)

// Opening modes: how the dialer means to talk. ONLY APPEND TO THIS LIST.
const (
	// modePlain: no key; the opening carries the Hello itself.
	modePlain = 0
	// modeNoise: Noise_NNpsk0_25519_AESGCM_SHA256 keyed by the cluster key
	// named in the opening.
	modeNoise = 1
)

// answerCode is the acceptor's verdict.
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

// hello is who the dialer says it is: in the opening without a key, in the
// first sealed frame with one.
type hello struct {
	cluster string
	addr    string
}

// opening is the dialer's first frame, always in plaintext.
type opening struct {
	version uint8
	mode    uint8
	hello   hello         // modePlain
	keyID   clusterkey.ID // modeNoise
	msg1    []byte        // modeNoise: Noise message 1
}

// answer is the acceptor's verdict on a Hello.
type answer struct {
	version uint8 // as received; appendAnswer always writes ours
	code    answerCode
	cluster string
	reason  string
}

func appendHello(dst []byte, h hello) []byte {
	dst = append(dst, byte(len(h.cluster)))
	dst = append(dst, h.cluster...)
	dst = append(dst, byte(len(h.addr)))
	return append(dst, h.addr...)
}

// parseHello decodes a Hello's fields; nothing may follow them.
func parseHello(b []byte) (hello, error) {
	var h hello
	cluster, rest, ok := cutString(b)
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

// appendPlainOpening appends the opening of a keyless dialer.
func appendPlainOpening(dst []byte, h hello) []byte {
	dst = append(dst, magic...)
	dst = append(dst, HandshakeVersion, modePlain)
	return appendHello(dst, h)
}

// appendKeyedPreamble appends the part of a keyed opening that precedes
// Noise message 1: it is also the handshake's prologue.
func appendKeyedPreamble(dst []byte, id clusterkey.ID) []byte {
	dst = append(dst, magic...)
	dst = append(dst, HandshakeVersion, modeNoise)
	return append(dst, id[:]...)
}

// parseOpening decodes the dialer's first frame. An opening of another
// version is reported as ErrVersion with the version filled in, without
// looking further: its layout may differ.
func parseOpening(b []byte) (opening, error) {
	var o opening
	if len(b) < len(magic)+1 || string(b[:len(magic)]) != magic {
		return o, fmt.Errorf("%w: not a dcounter handshake (bad magic)", ErrHandshake)
	}
	o.version = b[len(magic)]
	if o.version != HandshakeVersion {
		return o, fmt.Errorf("%w: peer speaks handshake version %d, this node %d (run one version across the cluster)", ErrVersion, o.version, HandshakeVersion)
	}
	if len(b) < openingHeaderLen {
		return o, fmt.Errorf("%w: opening too short", ErrHandshake)
	}
	o.mode = b[len(magic)+1]
	rest := b[openingHeaderLen:]
	switch o.mode {
	case modePlain:
		h, err := parseHello(rest)
		if err != nil {
			return o, err
		}
		o.hello = h
	case modeNoise:
		if len(b) != keyedOpeningLen {
			return o, fmt.Errorf("%w: keyed opening of %d bytes, want %d", ErrHandshake, len(b), keyedOpeningLen)
		}
		copy(o.keyID[:], rest)
		o.msg1 = rest[len(o.keyID):]
	default:
		return o, fmt.Errorf("%w: unknown handshake mode %d", ErrHandshake, o.mode)
	}
	return o, nil
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
	a.version = b[len(magic)]
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

// appendProceed appends the acceptor's reply to a keyed opening it takes
// up: the answer header with code ok, then Noise message 2.
func appendProceed(dst, msg2 []byte) []byte {
	dst = append(dst, magic...)
	dst = append(dst, HandshakeVersion, byte(codeOK))
	return append(dst, msg2...)
}

// parseProceed returns the Noise message 2 in a reply to a keyed opening,
// or ok false if the reply is not one (a refusal, to read with parseAnswer).
func parseProceed(b []byte) (msg2 []byte, ok bool) {
	if len(b) != openingHeaderLen+msg2Len || string(b[:len(magic)]) != magic ||
		b[len(magic)] != HandshakeVersion || answerCode(b[len(magic)+1]) != codeOK {
		return nil, false
	}
	return b[openingHeaderLen:], true
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
	// hello is what the dialer said, when it got that far.
	hello hello
	// seal, when set, seals the answer: the dialer proved it holds a key.
	// Otherwise the answer goes in plaintext so the dialer can log why.
	seal *sealer
}

func (e *handshakeError) Error() string { return e.err.Error() }
func (e *handshakeError) Unwrap() error { return e.err }

// handshaker runs either side of the handshake. Its fields are fixed at
// construction; each handshake has its own state.
type handshaker struct {
	cluster string
	addr    string // our advertise address, sent when dialing
	keys    clusterkey.Keyring
	random  io.Reader // ephemeral keys; nil means crypto/rand
	timeout time.Duration
}

// readHandshakeFrame reads one small frame, describing failures for the log.
func readHandshakeFrame(fr *frameReader, what string, timeout time.Duration) ([]byte, error) {
	body, err := fr.readBody()
	switch {
	case err == nil:
		return body, nil
	case errors.Is(err, io.EOF):
		return nil, &handshakeError{err: fmt.Errorf("%w: connection closed before the %s: %w", ErrHandshake, what, io.EOF), quiet: true, code: codeBadHello}
	case isTimeout(err):
		return nil, &handshakeError{err: fmt.Errorf("%w: no %s within %v", ErrHandshake, what, timeout), quiet: true, code: codeBadHello}
	case errors.Is(err, ErrFrameTooLarge), errors.Is(err, ErrEmptyFrame):
		return nil, &handshakeError{err: fmt.Errorf("%w: bad %s: %w", ErrHandshake, what, err), code: codeBadHello}
	}
	return nil, &handshakeError{err: fmt.Errorf("%w: reading the %s: %w", ErrHandshake, what, err), code: codeBadHello}
}

// accept runs the acceptor's side: it reads the opening and, with keys,
// completes the Noise handshake and reads the sealed Hello. It returns the
// Hello and the sealer that opens the dialer's frames (nil without keys),
// having sent the ok answer; or a *handshakeError saying what to answer,
// having sent nothing.
func (hs *handshaker) accept(c handshakeConn) (hello, *sealer, error) {
	fr := frameReader{r: c, max: maxHandshakeFrame}
	body, err := readHandshakeFrame(&fr, "opening", hs.timeout)
	if err != nil {
		return hello{}, nil, err
	}
	o, err := parseOpening(body)
	if err != nil {
		code := codeBadHello
		if errors.Is(err, ErrVersion) {
			code = codeBadVersion
		} else if !bytes.HasPrefix(body, []byte(magic)) {
			err = fmt.Errorf("%w (a version-1 node with a cluster key, or not a dcounter node)", err)
		}
		return hello{}, nil, &handshakeError{err: err, code: code}
	}

	if o.mode == modePlain {
		if !hs.keys.Empty() {
			return o.hello, nil, &handshakeError{err: fmt.Errorf("%w: plaintext hello, but the accepting node requires the cluster key (the dialing node has none)", ErrAuth), code: codeAuthFailed, hello: o.hello}
		}
		if err := hs.checkCluster(o.hello); err != nil {
			return o.hello, nil, err
		}
		return o.hello, nil, hs.writeAnswer(c, answer{code: codeOK}, nil)
	}

	if hs.keys.Empty() {
		return hello{}, nil, &handshakeError{err: fmt.Errorf("%w: the dialing node uses a cluster key (id %s), the accepting node has none", ErrAuth, o.keyID), code: codeAuthFailed}
	}
	key, ok := hs.keys.Find(o.keyID)
	if !ok {
		return hello{}, nil, &handshakeError{err: fmt.Errorf("%w: the dialing node's key (id %s) is not in the accepting node's keyring", ErrAuth, o.keyID), code: codeAuthFailed}
	}
	state, err := newHandshakeState(false, key.Derive(clusterkey.Gossip), body[:openingHeaderLen+len(o.keyID)], hs.random)
	if err != nil {
		return hello{}, nil, fmt.Errorf("%w: %v", ErrHandshake, err)
	}
	if _, _, _, err := state.ReadMessage(nil, o.msg1); err != nil {
		return hello{}, nil, &handshakeError{err: fmt.Errorf("%w: handshake message 1 did not authenticate with key %s (tampered with, or not made with that key)", ErrAuth, o.keyID), code: codeAuthFailed}
	}
	msg2, fromDialer, toDialer, err := state.WriteMessage(nil, nil)
	if err != nil {
		return hello{}, nil, fmt.Errorf("%w: %v", ErrHandshake, err)
	}
	if _, err := c.Write(appendFrame(nil, appendProceed(make([]byte, 0, openingHeaderLen+msg2Len), msg2))); err != nil {
		return hello{}, nil, &handshakeError{err: fmt.Errorf("%w: sending handshake message 2: %w", ErrHandshake, err), quiet: true}
	}
	in, out := &sealer{cs: fromDialer}, &sealer{cs: toDialer}

	body, err = readHandshakeFrame(&fr, "sealed hello", hs.timeout)
	if err != nil {
		return hello{}, nil, err
	}
	pt, err := in.open(fr.hdr[:], body)
	if err != nil {
		// The only way to get here holding no key is to replay a
		// recorded opening: the reply's fresh ephemeral key made new
		// session keys, which the recorded frames were not sealed with.
		return hello{}, nil, &handshakeError{err: fmt.Errorf("%w: the hello did not authenticate (a replayed or tampered connection)", ErrAuth), code: codeAuthFailed}
	}
	h, err := parseHello(pt)
	if err != nil {
		return hello{}, nil, &handshakeError{err: err, code: codeBadHello, seal: out}
	}
	if err := hs.checkCluster(h); err != nil {
		err.(*handshakeError).seal = out
		return h, nil, err
	}
	return h, in, hs.writeAnswer(c, answer{code: codeOK}, out)
}

// checkCluster refuses a Hello from another cluster.
func (hs *handshaker) checkCluster(h hello) error {
	if h.cluster != hs.cluster {
		return &handshakeError{
			err:   fmt.Errorf("%w: peer is in cluster %q, this node in %q", ErrWrongCluster, h.cluster, hs.cluster),
			code:  codeWrongCluster,
			hello: h,
		}
	}
	return nil
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

// writeAnswer sends the acceptor's verdict, sealed when seal is set.
func (hs *handshaker) writeAnswer(c io.Writer, a answer, seal *sealer) error {
	a.cluster = hs.cluster
	body := appendAnswer(make([]byte, 0, 64), a)
	var frame []byte
	if seal != nil {
		var err error
		if frame, err = seal.sealFrame(nil, body); err != nil {
			return err
		}
	} else {
		frame = appendFrame(nil, body)
	}
	_, err := c.Write(frame)
	return err
}

// dial runs the dialer's side on a fresh outbound connection. It returns
// the sealer for the frames we send (nil without keys) once the peer has
// accepted us.
func (hs *handshaker) dial(c handshakeConn) (*sealer, error) {
	if err := c.SetDeadline(time.Now().Add(hs.timeout)); err != nil {
		return nil, err
	}
	me := hello{cluster: hs.cluster, addr: hs.addr}
	fr := frameReader{r: c, max: maxHandshakeFrame}
	if hs.keys.Empty() {
		if _, err := c.Write(appendFrame(nil, appendPlainOpening(make([]byte, 0, 64), me))); err != nil {
			return nil, fmt.Errorf("sending hello: %w", err)
		}
		body, err := hs.readReply(&fr)
		if err != nil {
			return nil, err
		}
		a, err := parseAnswer(body)
		if err != nil {
			return nil, err
		}
		if err := hs.checkAnswer(a, ""); err != nil {
			return nil, err
		}
		return nil, c.SetDeadline(time.Time{})
	}

	key := hs.keys.Primary()
	preamble := appendKeyedPreamble(make([]byte, 0, keyedOpeningLen), key.ID())
	state, err := newHandshakeState(true, key.Derive(clusterkey.Gossip), preamble, hs.random)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrHandshake, err)
	}
	opening, _, _, err := state.WriteMessage(bytes.Clone(preamble), nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrHandshake, err)
	}
	if _, err := c.Write(appendFrame(nil, opening)); err != nil {
		return nil, fmt.Errorf("sending the handshake: %w", err)
	}
	body, err := hs.readReply(&fr)
	if err != nil {
		return nil, err
	}
	msg2, ok := parseProceed(body)
	if !ok {
		a, err := parseAnswer(body)
		if err != nil {
			return nil, err
		}
		if a.code == codeOK {
			return nil, fmt.Errorf("%w: peer answered a keyed handshake in plaintext", ErrAuth)
		}
		return nil, hs.checkAnswer(a, " (unauthenticated answer)")
	}
	_, out, in, err := state.ReadMessage(nil, msg2)
	if err != nil {
		return nil, fmt.Errorf("%w: the peer's handshake reply did not authenticate with key %s (the peer does not hold it, or the connection was tampered with)", ErrAuth, key.ID())
	}
	seal, open := &sealer{cs: out}, &sealer{cs: in}
	frame, err := seal.sealFrame(nil, appendHello(make([]byte, 0, 64), me))
	if err != nil {
		return nil, err
	}
	if _, err := c.Write(frame); err != nil {
		return nil, fmt.Errorf("sending hello: %w", err)
	}
	if body, err = hs.readReply(&fr); err != nil {
		return nil, err
	}
	unsealed, perr := parseAnswer(body) // before open: a failed open clobbers body
	pt, err := open.open(fr.hdr[:], body)
	if err != nil {
		if perr != nil {
			return nil, fmt.Errorf("%w: the peer's answer did not authenticate", ErrAuth)
		}
		return nil, hs.checkAnswer(unsealed, " (unauthenticated answer)")
	}
	a, err := parseAnswer(pt)
	if err != nil {
		return nil, err
	}
	if err := hs.checkAnswer(a, ""); err != nil {
		return nil, err
	}
	return seal, c.SetDeadline(time.Time{})
}

// readReply reads a frame the acceptor sent during the handshake.
func (hs *handshaker) readReply(fr *frameReader) ([]byte, error) {
	body, err := fr.readBody()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: peer closed the connection during the handshake", ErrHandshake)
		}
		if errors.Is(err, ErrFrameTooLarge) || errors.Is(err, ErrEmptyFrame) {
			return nil, fmt.Errorf("%w: bad answer: %w", ErrHandshake, err)
		}
		return nil, fmt.Errorf("waiting for the answer: %w", err)
	}
	return body, nil
}

// checkAnswer turns the acceptor's answer into nil or the error to report.
func (hs *handshaker) checkAnswer(a answer, how string) error {
	switch {
	case a.code == codeOK && a.cluster != hs.cluster:
		return fmt.Errorf("%w: peer accepted but says it is in cluster %q, this node in %q", ErrWrongCluster, a.cluster, hs.cluster)
	case a.code == codeOK:
		return nil
	case a.code == codeWrongCluster:
		return fmt.Errorf("%w: peer is in cluster %q, this node in %q%s", ErrWrongCluster, a.cluster, hs.cluster, how)
	case a.version != HandshakeVersion:
		return fmt.Errorf("%w: peer speaks handshake version %d, this node %d, and refused the hello (%s)%s: %s", ErrVersion, a.version, HandshakeVersion, a.code, how, a.reason)
	}
	return fmt.Errorf("%w: peer refused the hello (%s)%s: %s", a.code.err(), a.code, how, a.reason)
}
