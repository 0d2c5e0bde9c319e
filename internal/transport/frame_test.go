package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"testing/iotest"
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
	s, err := newSealer(testKey(9))
	if err != nil {
		t.Fatal(err)
	}
	var stream []byte
	for _, p := range [][]byte{[]byte("x"), pattern(1, 100000)} {
		stream = s.sealFrame(stream, p)
	}
	a, b := s.sealFrame(nil, []byte("same")), s.sealFrame(nil, []byte("same"))
	if bytes.Equal(a, b) {
		t.Error("two seals of one plaintext are identical: nonces repeat")
	}
	fr := frameReader{r: iotest.OneByteReader(bytes.NewReader(stream)), max: 1 << 20, seal: s}
	if p, err := fr.next(); err != nil || string(p) != "x" {
		t.Fatalf("first: %q, %v", p, err)
	}
	if p, err := fr.next(); err != nil || !bytes.Equal(p, pattern(1, 100000)) {
		t.Fatalf("second: %d bytes, %v", len(p), err)
	}
	empty := s.sealFrame(nil, nil)
	fr = frameReader{r: bytes.NewReader(empty), max: 1024, seal: s}
	if _, err := fr.next(); !errors.Is(err, ErrEmptyFrame) {
		t.Errorf("sealed empty payload: %v", err)
	}
	if _, err := newSealer(make([]byte, 16)); !errors.Is(err, ErrConfig) {
		t.Errorf("16-byte key: %v", err)
	}
}

func frameSeeds() [][]byte {
	s, _ := newSealer(testKey(1))
	var two []byte
	two = appendFrame(two, []byte("one"))
	two = appendFrame(two, []byte("two"))
	return [][]byte{
		nil,
		{0, 0, 0, 0},
		{0xff, 0xff, 0xff, 0xff},
		{0, 0, 4, 1},
		{0, 0, 0, 5, 'a'},
		appendFrame(nil, []byte("x")),
		two,
		s.sealFrame(nil, []byte("sealed")),
		s.sealFrame(s.sealFrame(nil, []byte("a")), pattern(3, 2000)),
		appendFrame(nil, appendHello(nil, hello{version: 1, cluster: "c", addr: "h:1"})),
	}
}

func FuzzReadFrame(f *testing.F) {
	for _, s := range frameSeeds() {
		f.Add(s, false)
		f.Add(s, true)
	}
	s, _ := newSealer(testKey(1))
	f.Fuzz(func(t *testing.T, data []byte, oneByte bool) {
		for _, seal := range []*sealer{nil, s} {
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
// with arbitrary bytes, with and without a key.
func FuzzServeConn(f *testing.F) {
	plainHello := appendFrame(nil, appendHello(nil, helloFor("c", "h:1")))
	s, _ := newSealer(testKey(1))
	sealedHello := s.sealFrame(nil, appendHello(nil, helloFor("c", "h:1")))
	for _, seed := range frameSeeds() {
		f.Add(append(bytes.Clone(plainHello), seed...))
		f.Add(append(bytes.Clone(sealedHello), seed...))
		f.Add(seed)
	}
	h := func(from string, p []byte) {
		if from == "" || len(p) == 0 {
			panic("bad delivery")
		}
	}
	plain, err := newTCP(Config{Cluster: "c", AdvertiseAddr: "me:1", MaxFrame: 1024}, h)
	if err != nil {
		f.Fatal(err)
	}
	sealed, err := newTCP(Config{Cluster: "c", AdvertiseAddr: "me:1", MaxFrame: 1024, Key: testKey(1)}, h)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, tr := range []*TCP{plain, sealed} {
			tr.serveConn(&fakeConn{Reader: bytes.NewReader(data)}, "fuzz")
			tr.serveConn(&fakeConn{Reader: iotest.OneByteReader(bytes.NewReader(data))}, "fuzz")
		}
	})
}

func helloFor(cluster, addr string) hello {
	return hello{version: HandshakeVersion, cluster: cluster, addr: addr}
}

func FuzzParseHandshake(f *testing.F) {
	f.Add(appendHello(nil, helloFor("c", "h:1")))
	f.Add(appendAnswer(nil, answer{code: codeWrongCluster, cluster: "c", reason: "r"}))
	f.Add([]byte("DCNT\x02"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if h, err := parseHello(b); err == nil {
			if got := appendHello(nil, h); !bytes.Equal(got, b) {
				t.Fatalf("hello does not round-trip: %x -> %+v -> %x", b, h, got)
			}
		}
		if a, err := parseAnswer(b); err == nil && len(a.cluster) > MaxClusterLen {
			t.Fatalf("answer with a %d-byte cluster", len(a.cluster))
		}
	})
}
