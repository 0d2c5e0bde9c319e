package transport

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/flynn/noise"
)

// The handshake's cryptography: Noise_NNpsk0_25519_AESGCM_SHA256. See the
// package doc for why this suite and pattern.
var suite = noise.NewCipherSuite(noise.DH25519, noise.CipherAESGCM, noise.HashSHA256)

const (
	// tagSize is the AEAD tag every sealed frame carries.
	tagSize = 16
	// sealOverhead is what sealing adds to a frame body.
	sealOverhead = tagSize
	// msg1Len and msg2Len are the Noise handshake messages' sizes: an
	// ephemeral public key and the tag of an empty payload.
	msg1Len = 32 + tagSize
	msg2Len = 32 + tagSize
)

// newHandshakeState starts one side of an NNpsk0 handshake. prologue is
// the dialer's plaintext preamble, so that tampering with it (the version,
// the mode, the key ID) makes the handshake fail.
func newHandshakeState(initiator bool, psk, prologue []byte, random io.Reader) (*noise.HandshakeState, error) {
	return noise.NewHandshakeState(noise.Config{
		CipherSuite:           suite,
		Random:                random,
		Pattern:               noise.HandshakeNN,
		Initiator:             initiator,
		Prologue:              prologue,
		PresharedKey:          psk,
		PresharedKeyPlacement: 0,
	})
}

// sealer seals the frames of one direction of one connection with the
// CipherState the handshake produced for it. Its nonce is the count of
// frames sealed so far, so frames can be neither reordered, dropped,
// repeated nor moved to another connection without failing to open. It
// is used by one goroutine at a time.
type sealer struct {
	cs *noise.CipherState
}

// sealFrame appends a complete frame (length prefix, ciphertext and tag)
// carrying plaintext to dst and returns it. The length prefix is the
// additional data, so a frame cannot be cut or extended undetected.
//
// Frames may be far larger than Noise's 65535-byte transport messages:
// that limit serves Noise's own framing, which this package replaces with
// its 4-byte length prefix; AES-GCM itself is sound up to 64 GiB a message.
func (s *sealer) sealFrame(dst, plaintext []byte) ([]byte, error) {
	n := len(plaintext) + sealOverhead
	var hdr [frameHeaderLen]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(n))
	start := len(dst)
	dst = append(grow(dst, frameHeaderLen+n), hdr[:]...)
	out, err := s.cs.Encrypt(dst, hdr[:], plaintext)
	if err != nil { // only after 2^64-1 frames on one connection
		return dst[:start], fmt.Errorf("%w: %v", ErrAuth, err)
	}
	return out, nil
}

// open authenticates and decrypts a frame body in place, given the frame's
// length prefix, and returns the plaintext (aliasing body). A body that
// fails to open is left clobbered.
func (s *sealer) open(hdr, body []byte) ([]byte, error) {
	if len(body) < sealOverhead {
		return nil, fmt.Errorf("%w: sealed frame of %d bytes is shorter than its tag", ErrAuth, len(body))
	}
	pt, err := s.cs.Decrypt(body[:0], hdr, body)
	if err != nil {
		return nil, fmt.Errorf("%w: frame %d did not authenticate", ErrAuth, s.cs.Nonce())
	}
	return pt, nil
}

// grow extends b's capacity to hold n more bytes, reallocating if needed.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), len(b)+n)
		copy(nb, b)
		b = nb
	}
	return b
}
