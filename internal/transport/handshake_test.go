package transport

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dcounter/dcounter/internal/clusterkey"
	"github.com/dcounter/dcounter/internal/clusterkey/clusterkeytest"
)

// Golden bytes: changing these breaks compatibility with running nodes.
func TestHandshakeGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  []byte
		want string
	}{
		{
			"plaintext opening",
			appendPlainOpening(nil, hello{cluster: "prod", addr: "10.0.0.1:7946"}),
			"44434e54" + "02" + "00" + "04" + hex.EncodeToString([]byte("prod")) + "0d" + hex.EncodeToString([]byte("10.0.0.1:7946")),
		},
		{
			"keyed preamble",
			appendKeyedPreamble(nil, clusterkey.ID{1, 2, 3, 4, 5, 6, 7, 8}),
			"44434e54" + "02" + "01" + "0102030405060708",
		},
		{
			"hello (sealed in keyed mode)",
			appendHello(nil, hello{cluster: "prod", addr: "10.0.0.1:7946"}),
			"04" + hex.EncodeToString([]byte("prod")) + "0d" + hex.EncodeToString([]byte("10.0.0.1:7946")),
		},
		{
			"proceed",
			appendProceed(nil, bytes.Repeat([]byte{0xaa}, msg2Len)),
			"44434e54" + "02" + "00" + strings.Repeat("aa", msg2Len),
		},
		{
			"ok answer",
			appendAnswer(nil, answer{code: codeOK, cluster: "prod"}),
			"44434e54" + "02" + "00" + "04" + hex.EncodeToString([]byte("prod")) + "00",
		},
		{
			"wrong cluster answer",
			appendAnswer(nil, answer{code: codeWrongCluster, cluster: "b", reason: "no"}),
			"44434e54" + "02" + "01" + "01" + "62" + "02" + "6e6f",
		},
		{
			"frame",
			appendFrame(nil, []byte("hi")),
			"00000002" + "6869",
		},
	} {
		if got := hex.EncodeToString(tc.got); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
}

// transcript is what each side of a handshake wrote.
type transcript struct {
	dialer, acceptor []byte
}

// recConn records what is written through it.
type recConn struct {
	net.Conn
	w *bytes.Buffer
}

func (c recConn) Write(b []byte) (int, error) {
	c.w.Write(b)
	return c.Conn.Write(b)
}

// goldenTranscript runs a keyed handshake with key 1 and fixed ephemeral
// keys (dialer fixedRand(1), acceptor fixedRand(2)) over an in-memory
// pipe, then has the dialer send msgs.
func goldenTranscript(t testing.TB, cluster string, msgs ...[]byte) transcript {
	t.Helper()
	keys := clusterkeytest.Ring(t, 1)
	dc, ac := net.Pipe()
	defer dc.Close()
	defer ac.Close()
	var tr transcript
	var dw, aw bytes.Buffer
	done := make(chan error, 1)
	go func() {
		_, _, err := (&handshaker{cluster: cluster, keys: keys, random: fixedRand(2), timeout: 5 * time.Second}).accept(recConn{ac, &aw})
		done <- err
	}()
	dialer := handshaker{cluster: cluster, addr: "10.0.0.1:7946", keys: keys, random: fixedRand(1), timeout: 5 * time.Second}
	seal, err := dialer.dial(recConn{dc, &dw})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("accept: %v", err)
	}
	for _, m := range msgs {
		f, err := seal.sealFrame(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		dw.Write(f)
	}
	tr.dialer, tr.acceptor = dw.Bytes(), aw.Bytes()
	return tr
}

// TestKeyedHandshakeGolden freezes a whole keyed conversation. Its bytes
// depend on the key, the ephemeral keys and the suite: any change to the
// handshake or the sealing changes them.
func TestKeyedHandshakeGolden(t *testing.T) {
	tr := goldenTranscript(t, "prod", []byte("hi"))
	want := transcript{
		dialer:   mustHex(goldenDialer),
		acceptor: mustHex(goldenAcceptor),
	}
	if !bytes.Equal(tr.dialer, want.dialer) {
		t.Errorf("dialer wrote\n%x\nwant\n%x", tr.dialer, want.dialer)
	}
	if !bytes.Equal(tr.acceptor, want.acceptor) {
		t.Errorf("acceptor wrote\n%x\nwant\n%x", tr.acceptor, want.acceptor)
	}
	// The parts, as the package doc lists them.
	d, a := tr.dialer, tr.acceptor
	id := clusterkeytest.Ring(t, 1).Primary().ID()
	checkPrefix := func(what string, b []byte, want string) []byte {
		t.Helper()
		w := mustHex(want)
		if !bytes.HasPrefix(b, w) {
			t.Fatalf("%s: got %x, want prefix %x", what, b, w)
		}
		return b[len(w):]
	}
	d = checkPrefix("opening frame header", d, "0000003e"+"44434e54"+"02"+"01"+hex.EncodeToString(id[:]))
	d = d[msg1Len:]
	a = checkPrefix("proceed frame header", a, "00000036"+"44434e54"+"02"+"00")
	a = a[msg2Len:]
	hello := appendHello(nil, hello{cluster: "prod", addr: "10.0.0.1:7946"})
	d = checkPrefix("sealed hello length", d, fmt.Sprintf("%08x", len(hello)+tagSize))
	d = d[len(hello)+tagSize:]
	okAnswer := appendAnswer(nil, answer{code: codeOK, cluster: "prod"})
	a = checkPrefix("sealed answer length", a, fmt.Sprintf("%08x", len(okAnswer)+tagSize))
	if len(a) != len(okAnswer)+tagSize {
		t.Errorf("acceptor wrote %d bytes after the sealed answer", len(a)-len(okAnswer)-tagSize)
	}
	d = checkPrefix("sealed message length", d, fmt.Sprintf("%08x", 2+tagSize))
	if len(d) != 2+tagSize {
		t.Errorf("dialer wrote %d bytes after its message", len(d)-2-tagSize)
	}
}

const (
	goldenDialer = "" +
		"0000003e" + // opening frame length (62)
		"44434e54" + // magic "DCNT"
		"02" + // version 2
		"01" + // mode 1: Noise
		"b5410098f4f34594" + // key ID of key 1
		"a4e09292b651c278b9772c569f5fa9bb13d906b46ab68c9df9dc2b4409f8a209" + // msg1: dialer's ephemeral public key
		"9b595d1639c94ee6e5cda586161cd5cc" + // msg1: tag of the empty payload
		"00000023" + // sealed hello frame length (35)
		"46d2891bde345160d794c9af777ef2e53233d564e646bfd21ee3ba3c5e9902d50ff750" + // hello "prod" "10.0.0.1:7946", sealed, and its tag
		"00000012" + // message frame length (18)
		"0d5271f8c48201c25dd448c642745dde0d09" // message "hi", sealed, and its tag
	goldenAcceptor = "" +
		"00000036" + // proceed frame length (54)
		"44434e54" + // magic "DCNT"
		"02" + // version 2
		"00" + // code 0: ok, go on
		"ce8d3ad1ccb633ec7b70c17814a5c76ecd029685050d344745ba05870e587d59" + // msg2: acceptor's ephemeral public key
		"aaefbc1feecbdc3567aa17ca7db9bc64" + // msg2: tag of the empty payload
		"0000001c" + // sealed answer frame length (28)
		"f3155e5de92231c19057e5682325f548995f9a14f35eda47d2c5fa13" // answer ok "prod", sealed, and its tag
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func TestParseOpening(t *testing.T) {
	valid := appendPlainOpening(nil, hello{cluster: "c", addr: "h:1"})
	o, err := parseOpening(valid)
	if err != nil || o.hello != (hello{"c", "h:1"}) || o.mode != modePlain {
		t.Fatalf("parseOpening = %+v, %v", o, err)
	}
	id := clusterkey.ID{9, 9, 9, 9, 9, 9, 9, 9}
	keyed := append(appendKeyedPreamble(nil, id), bytes.Repeat([]byte{7}, msg1Len)...)
	o, err = parseOpening(keyed)
	if err != nil || o.mode != modeNoise || o.keyID != id || !bytes.Equal(o.msg1, keyed[openingHeaderLen+8:]) {
		t.Fatalf("parseOpening(keyed) = %+v, %v", o, err)
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrHandshake},
		{"bad magic", append([]byte("XCNT"), valid[4:]...), ErrHandshake},
		{"version 1", []byte("DCNT\x01\x01c\x03h:1"), ErrVersion},
		{"version 3, nothing after", []byte("DCNT\x03"), ErrVersion},
		{"no mode", []byte("DCNT\x02"), ErrHandshake},
		{"unknown mode", []byte("DCNT\x02\x07\x01c\x03h:1"), ErrHandshake},
		{"empty cluster", []byte("DCNT\x02\x00\x00\x03h:1"), ErrHandshake},
		{"cluster too long", append(append([]byte("DCNT\x02\x00\x41"), strings.Repeat("c", 65)...), "\x03h:1"...), ErrHandshake},
		{"cluster past end", []byte("DCNT\x02\x00\x09c"), ErrHandshake},
		{"no address", []byte("DCNT\x02\x00\x01c"), ErrHandshake},
		{"empty address", []byte("DCNT\x02\x00\x01c\x00"), ErrHandshake},
		{"address past end", []byte("DCNT\x02\x00\x01c\x05h:1"), ErrHandshake},
		{"trailing bytes", append(bytes.Clone(valid), 0), ErrHandshake},
		{"keyed, short", keyed[:len(keyed)-1], ErrHandshake},
		{"keyed, long", append(bytes.Clone(keyed), 0), ErrHandshake},
	} {
		if _, err := parseOpening(tc.b); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, ok := parseProceed(appendProceed(nil, make([]byte, msg2Len))); !ok {
		t.Error("parseProceed refuses a proceed")
	}
	for _, b := range [][]byte{appendProceed(nil, make([]byte, msg2Len-1)), appendAnswer(nil, answer{code: codeAuthFailed, reason: "x"})} {
		if _, ok := parseProceed(b); ok {
			t.Errorf("parseProceed(%x) accepted", b)
		}
	}
}

func TestParseAnswer(t *testing.T) {
	a, err := parseAnswer(appendAnswer(nil, answer{code: codeBadVersion, cluster: "c", reason: strings.Repeat("r", 300)}))
	if err != nil || a.code != codeBadVersion || a.cluster != "c" || len(a.reason) != maxReasonLen {
		t.Fatalf("parseAnswer = %+v, %v", a, err)
	}
	for _, b := range [][]byte{nil, []byte("DCNT\x02"), []byte("DCNT\x01\x00"), []byte("DCNT\x01\x00\x00"), []byte("DCNT\x01\x00\x00\x01"), []byte("DCNT\x01\x00\x00\x00x")} {
		if _, err := parseAnswer(b); !errors.Is(err, ErrHandshake) {
			t.Errorf("parseAnswer(%q) = %v", b, err)
		}
	}
}

// fakeConn feeds a fixed input to serveConn and records what it writes.
type fakeConn struct {
	io.Reader
	out bytes.Buffer
}

func (c *fakeConn) Write(b []byte) (int, error)      { return c.out.Write(b) }
func (c *fakeConn) SetDeadline(time.Time) error      { return nil }
func (c *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fakeConn) SetWriteDeadline(time.Time) error { return nil }

func TestServeConnOverFakeConn(t *testing.T) {
	in := &inbox{}
	tr, err := newTCP(Config{Cluster: "c", AdvertiseAddr: "me:1"}, in.handle)
	if err != nil {
		t.Fatal(err)
	}
	stream := appendFrame(nil, appendPlainOpening(nil, hello{cluster: "c", addr: "you:2"}))
	stream = appendFrame(stream, []byte("one"))
	stream = appendFrame(stream, []byte("two"))
	c := &fakeConn{Reader: bytes.NewReader(stream)}
	tr.serveConn(c, "fake")
	got := in.get()
	if len(got) != 2 || string(got[0].payload) != "one" || string(got[1].payload) != "two" || got[0].from != "you:2" {
		t.Errorf("delivered %+v", got)
	}
	fr := frameReader{r: &c.out, max: maxHandshakeFrame}
	body, err := fr.next()
	if err != nil {
		t.Fatal(err)
	}
	if a, err := parseAnswer(body); err != nil || a.code != codeOK || a.cluster != "c" {
		t.Errorf("answer %+v, %v", a, err)
	}
	if s := tr.Stats(); s.FramesReceived != 2 || s.BytesReceived != 6 || s.Rejected != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestVersionMismatchIsAnswered(t *testing.T) {
	tr, err := newTCP(Config{Cluster: "c"}, func(string, []byte) { t.Error("delivered") })
	if err != nil {
		t.Fatal(err)
	}
	stream := appendFrame(nil, []byte("DCNT\x07whatever version 7 sends"))
	stream = appendFrame(stream, []byte("msg"))
	c := &fakeConn{Reader: bytes.NewReader(stream)}
	tr.serveConn(c, "fake")
	fr := frameReader{r: &c.out, max: maxHandshakeFrame}
	body, err := fr.next()
	if err != nil {
		t.Fatal(err)
	}
	if a, err := parseAnswer(body); err != nil || a.code != codeBadVersion {
		t.Errorf("answer %+v, %v", a, err)
	}
	if tr.Stats().Rejected != 1 {
		t.Errorf("stats %+v", tr.Stats())
	}
}

// TestGoldenStreamIsAccepted feeds the frozen dialer bytes to a keyed
// transport whose ephemeral key is the golden one: it must deliver the
// message and answer exactly the frozen acceptor bytes.
func TestGoldenStreamIsAccepted(t *testing.T) {
	in := &inbox{}
	tr, err := newTCP(Config{Cluster: "prod", AdvertiseAddr: "me:1", Keys: clusterkeytest.Ring(t, 1)}, in.handle)
	if err != nil {
		t.Fatal(err)
	}
	tr.hs.random = fixedRand(2)
	c := &fakeConn{Reader: bytes.NewReader(mustHex(goldenDialer))}
	tr.serveConn(c, "fake")
	if got := in.get(); len(got) != 1 || string(got[0].payload) != "hi" || got[0].from != "10.0.0.1:7946" {
		t.Errorf("delivered %+v", got)
	}
	if !bytes.Equal(c.out.Bytes(), mustHex(goldenAcceptor)) {
		t.Errorf("answered\n%x\nwant\n%x", c.out.Bytes(), mustHex(goldenAcceptor))
	}
}

// TestReplayedStreamIsRefused records a keyed connection that delivered
// messages and replays it verbatim, to the same transport and to a new one
// with the same key and cluster (a rebuilt cluster): the replay is refused
// at the handshake and delivers nothing.
func TestReplayedStreamIsRefused(t *testing.T) {
	keys := clusterkeytest.Ring(t, 7)
	first := listen(t, Config{Keys: keys})
	p := dialRaw(t, first.Addr(), keys)
	var rec bytes.Buffer
	p.conn = recNetConn{p.conn, &rec}
	p.handshake("test", "10.0.0.9:1", false)
	p.write(p.frame([]byte("inc counter")))
	p.write(p.frame([]byte("inc again")))
	waitFor(t, "genuine delivery", func() bool { return first.in.len() == 2 })
	p.conn.Close()

	rebuilt := listen(t, Config{Keys: keys})
	for _, target := range []*node{first, rebuilt} {
		before := target.in.len()
		r := dialRaw(t, target.Addr(), clusterkey.Keyring{})
		r.write(rec.Bytes())
		r.expectClosed()
		waitFor(t, "replay rejected", func() bool { return target.Stats().Rejected == 1 })
		if n := target.in.len(); n != before {
			t.Errorf("replay delivered %d messages", n-before)
		}
		if !target.log.has(slog.LevelWarn, "refused an inbound connection", "replayed") {
			t.Error("no warning about the replay")
		}
	}
}

// recNetConn records what is written through a net.Conn.
type recNetConn struct {
	net.Conn
	w *bytes.Buffer
}

func (c recNetConn) Write(b []byte) (int, error) {
	c.w.Write(b)
	return c.Conn.Write(b)
}

// TestVersion1Peers checks what a node of handshake version 1 and this one
// tell each other, in both directions, with and without keys.
func TestVersion1Peers(t *testing.T) {
	v1PlainHello := []byte("DCNT\x01\x01c\x03h:1")
	v1SealedHello := pattern(5, 12+len(v1PlainHello)+16) // random nonce, ciphertext, tag
	for _, tc := range []struct {
		name  string
		keys  clusterkey.Keyring
		hello []byte
		code  answerCode
		says  string
	}{
		{"keyless v1 to keyless", clusterkey.Keyring{}, v1PlainHello, codeBadVersion, "version 1, this node 2"},
		{"keyless v1 to keyed", clusterkeytest.Ring(t, 1), v1PlainHello, codeBadVersion, "version 1, this node 2"},
		{"keyed v1 to keyed", clusterkeytest.Ring(t, 1), v1SealedHello, codeBadHello, "version-1 node with a cluster key"},
		{"keyed v1 to keyless", clusterkey.Keyring{}, v1SealedHello, codeBadHello, "version-1 node with a cluster key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := newTCP(Config{Cluster: "c", Keys: tc.keys}, func(string, []byte) { t.Error("delivered") })
			if err != nil {
				t.Fatal(err)
			}
			c := &fakeConn{Reader: bytes.NewReader(appendFrame(nil, tc.hello))}
			tr.serveConn(c, "fake")
			fr := frameReader{r: &c.out, max: maxHandshakeFrame}
			body, err := fr.next()
			if err != nil {
				t.Fatal(err)
			}
			// A version-1 dialer reads this with the same layout.
			a, err := parseAnswer(body)
			if err != nil || a.code != tc.code || !strings.Contains(a.reason, tc.says) {
				t.Errorf("answer %+v, %v; want code %v saying %q", a, err, tc.code, tc.says)
			}
		})
	}

	// A version-1 acceptor answers a version-2 opening with its version.
	for _, keys := range []clusterkey.Keyring{{}, clusterkeytest.Ring(t, 1)} {
		v1Answer := []byte("DCNT\x01\x03\x01c\x0cdid not open")
		c := &fakeConn{Reader: bytes.NewReader(appendFrame(nil, v1Answer))}
		hs := handshaker{cluster: "c", addr: "h:1", keys: keys, timeout: time.Second}
		if _, err := hs.dial(c); !errors.Is(err, ErrVersion) || !strings.Contains(err.Error(), "version 1, this node 2") {
			t.Errorf("keys %v: dial error %v", keys.IDs(), err)
		}
	}
}
