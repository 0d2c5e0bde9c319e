package transport

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// Golden bytes: changing these breaks compatibility with running nodes.
func TestHandshakeGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  []byte
		want string
	}{
		{
			"hello",
			appendHello(nil, hello{version: 1, cluster: "prod", addr: "10.0.0.1:7946"}),
			"44434e54" + "01" + "04" + hex.EncodeToString([]byte("prod")) + "0d" + hex.EncodeToString([]byte("10.0.0.1:7946")),
		},
		{
			"ok answer",
			appendAnswer(nil, answer{code: codeOK, cluster: "prod"}),
			"44434e54" + "01" + "00" + "04" + hex.EncodeToString([]byte("prod")) + "00",
		},
		{
			"wrong cluster answer",
			appendAnswer(nil, answer{code: codeWrongCluster, cluster: "b", reason: "no"}),
			"44434e54" + "01" + "01" + "01" + "62" + "02" + "6e6f",
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

func TestParseHello(t *testing.T) {
	valid := appendHello(nil, hello{version: 1, cluster: "c", addr: "h:1"})
	h, err := parseHello(valid)
	if err != nil || h != (hello{1, "c", "h:1"}) {
		t.Fatalf("parseHello = %+v, %v", h, err)
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrHandshake},
		{"bad magic", append([]byte("XCNT"), valid[4:]...), ErrHandshake},
		{"version 2", append([]byte("DCNT\x02"), valid[5:]...), ErrVersion},
		{"version 2, nothing after", []byte("DCNT\x02"), ErrVersion},
		{"empty cluster", []byte("DCNT\x01\x00\x03h:1"), ErrHandshake},
		{"cluster too long", append(append([]byte("DCNT\x01\x41"), strings.Repeat("c", 65)...), "\x03h:1"...), ErrHandshake},
		{"cluster past end", []byte("DCNT\x01\x09c"), ErrHandshake},
		{"no address", []byte("DCNT\x01\x01c"), ErrHandshake},
		{"empty address", []byte("DCNT\x01\x01c\x00"), ErrHandshake},
		{"address past end", []byte("DCNT\x01\x01c\x05h:1"), ErrHandshake},
		{"trailing bytes", append(bytes.Clone(valid), 0), ErrHandshake},
	} {
		if _, err := parseHello(tc.b); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestParseAnswer(t *testing.T) {
	a, err := parseAnswer(appendAnswer(nil, answer{code: codeBadVersion, cluster: "c", reason: strings.Repeat("r", 300)}))
	if err != nil || a.code != codeBadVersion || a.cluster != "c" || len(a.reason) != maxReasonLen {
		t.Fatalf("parseAnswer = %+v, %v", a, err)
	}
	for _, b := range [][]byte{nil, []byte("DCNT\x01"), []byte("DCNT\x01\x00"), []byte("DCNT\x01\x00\x00"), []byte("DCNT\x01\x00\x00\x01"), []byte("DCNT\x01\x00\x00\x00x")} {
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
	stream := appendFrame(nil, appendHello(nil, hello{version: 1, cluster: "c", addr: "you:2"}))
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
