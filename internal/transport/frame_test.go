package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"github.com/dcounter/dcounter/internal/clusterkey/clusterkeytest"
	"io"
	"testing"
	"testing/iotest"

	"github.com/flynn/noise"
)

func TestFrameReader(t *testing.T) {
	var stream []byte
	want := [][]byte{[]byte("a"), pattern(1, readChunk+1), pattern(2, 3*readChunk+7), []byte("z")}
	for _, p := range want {
		stream = appendFrame(stream, p)
	}
	for name, r := range map[string]io.Reader{
		"whole":    bytes.NewReader(stream),
		"one byte": iotest.OneByteReader(bytes.NewReader(stream)),
		"half":     iotest.HalfReader(bytes.NewReader(stream)),
	} {
		fr := frameReader{r: r, max: 1 << 20}
		for i, w := range want {
			got, err := fr.next()
			if err != nil || !bytes.Equal(got, w) {
				t.Fatalf("%s: frame %d: %d bytes, %v", name, i, len(got), err)
			}
		}
		if _, err := fr.next(); err != io.EOF {
			t.Errorf("%s: at end: %v, want io.EOF", name, err)
		}
	}
}

func TestFrameReaderErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		input []byte
		want  error
	}{
		{"zero length", []byte{0, 0, 0, 0}, ErrEmptyFrame},
		{"over max", []byte{0, 0, 4, 1}, ErrFrameTooLarge},
		{"huge", []byte{0xff, 0xff, 0xff, 0xff}, ErrFrameTooLarge},
		{"truncated header", []byte{0, 0}, io.ErrUnexpectedEOF},
		{"truncated body", []byte{0, 0, 0, 9, 1, 2}, io.ErrUnexpectedEOF},
		{"truncated large body", append([]byte{0, 0, 4, 0}, make([]byte, 100)...), io.ErrUnexpectedEOF},
	} {
		fr := frameReader{r: bytes.NewReader(tc.input), max: 1024}
		if _, err := fr.next(); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

// A peer announcing a large frame and sending little must not make the
// reader allocate the announced size.
func TestFrameReaderAllocatesAsBytesArrive(t *testing.T) {
	input := append(binary.BigEndian.AppendUint32(nil, 30<<20), make([]byte, 10)...)
	fr := frameReader{r: bytes.NewReader(input), max: 32 << 20}
	fr.next()
	if c := cap(fr.buf); c > readChunk {
		t.Errorf("reader kept a %d-byte buffer for 10 bytes received", c)
	}
	buf, err := readFull(bytes.NewReader(make([]byte, 10)), nil, 30<<20)
	if !errors.Is(err, io.ErrUnexpectedEOF) || cap(buf) > readChunk {
		t.Errorf("readFull: cap %d, %v", cap(buf), err)
	}
}

func TestSealRoundTrip(t *testing.T) {
	seal, open := sessionPair(t, 9)
	var stream []byte
	for _, p := range [][]byte{[]byte("x"), pattern(1, 100000), []byte("same"), []byte("same")} {
		var err error
		if stream, err = seal.sealFrame(stream, p); err != nil {
			t.Fatal(err)
		}
	}
	fr := frameReader{r: iotest.OneByteReader(bytes.NewReader(stream)), max: 1 << 20, seal: open}
	if p, err := fr.next(); err != nil || string(p) != "x" {
		t.Fatalf("first: %q, %v", p, err)
	}
	if p, err := fr.next(); err != nil || !bytes.Equal(p, pattern(1, 100000)) {
		t.Fatalf("second: %d bytes, %v", len(p), err)
	}
	a, b := stream[len(stream)-2*(frameHeaderLen+4+tagSize):len(stream)-(frameHeaderLen+4+tagSize)], stream[len(stream)-(frameHeaderLen+4+tagSize):]
	if bytes.Equal(a, b) {
		t.Error("two seals of one plaintext are identical: nonces repeat")
	}
	empty, _ := seal.sealFrame(nil, nil)
	fr = frameReader{r: bytes.NewReader(empty), max: 1024, seal: open}
	if _, err := fr.next(); !errors.Is(err, ErrAuth) {
		t.Errorf("frame out of order: %v", err) // the "same" frames were never read
	}
}

// frameKey is the session key the sealed seeds are sealed with.
func frameKey(t testing.TB) (seal *sealer, key [32]byte) {
	seal, open := sessionPair(t, 1)
	return seal, open.cs.UnsafeKey()
}

func frameSeeds(t testing.TB) [][]byte {
	seal, _ := frameKey(t)
	var two []byte
	two = appendFrame(two, []byte("one"))
	two = appendFrame(two, []byte("two"))
	sealed := func(dst []byte, p []byte) []byte {
		f, _ := seal.sealFrame(dst, p)
		return f
	}
	one := sealed(nil, []byte("sealed"))
	return [][]byte{
		nil,
		{0, 0, 0, 0},
		{0xff, 0xff, 0xff, 0xff},
		{0, 0, 4, 1},
		{0, 0, 0, 5, 'a'},
		appendFrame(nil, []byte("x")),
		two,
		one,
		sealed(sealed(bytes.Clone(one), []byte("a")), pattern(3, 2000)),
		appendFrame(nil, appendPlainOpening(nil, hello{cluster: "c", addr: "h:1"})),
	}
}

func FuzzReadFrame(f *testing.F) {
	for _, s := range frameSeeds(f) {
		f.Add(s, false)
		f.Add(s, true)
	}
	_, key := frameKey(f)
	f.Fuzz(func(t *testing.T, data []byte, oneByte bool) {
		for _, seal := range []*sealer{nil, {cs: noise.UnsafeNewCipherState(suite, key, 0)}} {
			var r io.Reader = bytes.NewReader(data)
			if oneByte {
				r = iotest.OneByteReader(r)
			}
			const max = 1024
			fr := frameReader{r: r, max: max, seal: seal}
			total := 0
			for {
				p, err := fr.next()
				if err != nil {
					break
				}
				if len(p) == 0 || len(p) > max {
					t.Fatalf("payload of %d bytes", len(p))
				}
				total += frameHeaderLen + len(p)
				if total > len(data) {
					t.Fatalf("read %d bytes of payload and headers from %d bytes of input", total, len(data))
				}
			}
		}
	})
}

// FuzzServeConn drives the whole inbound path (handshake, frames, Handler)
// with arbitrary bytes, with and without a key. The keyed transport's
// ephemeral keys are fixed, so the seeds include complete keyed streams.
func FuzzServeConn(f *testing.F) {
	plainHello := appendFrame(nil, appendPlainOpening(nil, hello{cluster: "c", addr: "h:1"}))
	keyed := goldenTranscript(f, "c", []byte("m"))
	for _, seed := range frameSeeds(f) {
		f.Add(append(bytes.Clone(plainHello), seed...))
		f.Add(append(bytes.Clone(keyed.dialer), seed...))
		f.Add(seed)
	}
	f.Add(keyed.dialer)
	h := func(from string, p []byte) {
		if from == "" || len(p) == 0 {
			panic("bad delivery")
		}
	}
	plain, err := newTCP(Config{Cluster: "c", AdvertiseAddr: "me:1", MaxFrame: 1024}, h)
	if err != nil {
		f.Fatal(err)
	}
	sealed, err := newTCP(Config{Cluster: "c", AdvertiseAddr: "me:1", MaxFrame: 1024, Keys: clusterkeytest.Ring(f, 1)}, h)
	if err != nil {
		f.Fatal(err)
	}
	sealed.hs.random = fixedRand(2)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, tr := range []*TCP{plain, sealed} {
			tr.serveConn(&fakeConn{Reader: bytes.NewReader(data)}, "fuzz")
			tr.serveConn(&fakeConn{Reader: iotest.OneByteReader(bytes.NewReader(data))}, "fuzz")
		}
	})
}

func FuzzParseHandshake(f *testing.F) {
	f.Add(appendPlainOpening(nil, hello{cluster: "c", addr: "h:1"}))
	f.Add(appendHello(nil, hello{cluster: "c", addr: "h:1"}))
	f.Add(append(appendKeyedPreamble(nil, clusterkeytest.Ring(f, 1).Primary().ID()), make([]byte, msg1Len)...))
	f.Add(appendProceed(nil, make([]byte, msg2Len)))
	f.Add(appendAnswer(nil, answer{code: codeWrongCluster, cluster: "c", reason: "r"}))
	f.Add([]byte("DCNT\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if h, err := parseHello(b); err == nil {
			if got := appendHello(nil, h); !bytes.Equal(got, b) {
				t.Fatalf("hello does not round-trip: %x -> %+v -> %x", b, h, got)
			}
		}
		if o, err := parseOpening(b); err == nil {
			var got []byte
			if o.mode == modePlain {
				got = appendPlainOpening(nil, o.hello)
			} else {
				got = append(appendKeyedPreamble(nil, o.keyID), o.msg1...)
			}
			if !bytes.Equal(got, b) {
				t.Fatalf("opening does not round-trip: %x -> %+v -> %x", b, o, got)
			}
		}
		if msg2, ok := parseProceed(b); ok && len(msg2) != msg2Len {
			t.Fatalf("message 2 of %d bytes", len(msg2))
		}
		if a, err := parseAnswer(b); err == nil && len(a.cluster) > MaxClusterLen {
			t.Fatalf("answer with a %d-byte cluster", len(a.cluster))
		}
	})
}
