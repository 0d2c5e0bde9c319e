package transport

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"
)

const (
	// KeySize is the length of Config.Key: AES-256.
	KeySize = 32
	// nonceSize and tagSize are AES-GCM's standard sizes.
	nonceSize = 12
	tagSize   = 16
	// sealOverhead is what sealing adds to a frame body.
	sealOverhead = nonceSize + tagSize
)

// sealer seals and opens frame bodies with AES-256-GCM. It is safe for
// concurrent use: cipher.AEAD is, and nonces are random.
//
// Random 96-bit nonces keep the chance of a repeat negligible for well over
// 2^32 frames per key, far beyond a gossip cluster's lifetime traffic between
// key rotations.
type sealer struct {
	aead cipher.AEAD
}

func newSealer(key []byte) (*sealer, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("%w: key is %d bytes, want %d", ErrConfig, len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	return &sealer{aead: aead}, nil
}

// sealFrame appends a complete frame (length prefix, nonce, ciphertext and
// tag) carrying plaintext to dst and returns it.
func (s *sealer) sealFrame(dst, plaintext []byte) []byte {
	n := sealOverhead + len(plaintext)
	start := len(dst)
	dst = grow(dst, frameHeaderLen+n)
	frame := dst[start:]
	binary.BigEndian.PutUint32(frame[:frameHeaderLen], uint32(n))
	nonce := frame[frameHeaderLen : frameHeaderLen+nonceSize]
	rand.Read(nonce) // never fails (crypto/rand since Go 1.24)
	s.aead.Seal(frame[frameHeaderLen+nonceSize:frameHeaderLen+nonceSize], nonce, plaintext, frame[:frameHeaderLen])
	return dst
}

// open authenticates and decrypts a frame body in place, given the frame's
// length prefix, and returns the plaintext (aliasing body).
func (s *sealer) open(hdr, body []byte) ([]byte, error) {
	if len(body) < sealOverhead {
		return nil, fmt.Errorf("%w: sealed frame of %d bytes is shorter than nonce and tag", ErrAuth, len(body))
	}
	nonce, ct := body[:nonceSize], body[nonceSize:]
	pt, err := s.aead.Open(ct[:0], nonce, ct, hdr)
	if err != nil {
		return nil, ErrAuth
	}
	return pt, nil
}

// grow extends b by n bytes, reallocating if needed, and returns it.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), len(b)+n)
		copy(nb, b)
		b = nb
	}
	return b[:len(b)+n]
}
