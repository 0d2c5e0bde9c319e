// Package clusterkeytest builds deterministic keyrings for tests.
package clusterkeytest

import (
	"bytes"
	"testing"

	"github.com/dcounter/dcounter/internal/clusterkey"
)

// Key returns the test key whose every byte is b.
func Key(b byte) []byte { return bytes.Repeat([]byte{b}, clusterkey.Size) }

// Ring returns a keyring of the test keys Key(b) for each b, primary first.
func Ring(t testing.TB, bs ...byte) clusterkey.Keyring {
	t.Helper()
	var raw [][]byte
	for _, b := range bs {
		raw = append(raw, Key(b))
	}
	r, err := clusterkey.New(raw...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
