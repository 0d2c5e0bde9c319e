// Package wire defines the gossip protocol's messages and their encoding.
//
// # Message format
//
// A message travels as the payload of one transport frame (see package
// transport for framing, handshake and encryption). Its bytes are:
//
//	offset  size  field
//	0       1     protocol version (Version, currently 2)
//	1       1     message type (Type; an append-only list)
//	2       1     flags: bit 0 set = body is zstd-compressed; other bits must be 0
//	3       1     cluster name length L (1..MaxClusterLen)
//	4       L     cluster name
//	4+L     ...   body: the message struct encoded with msgpack (structs as
//	              arrays, fields in declaration order), zstd-compressed when the
//	              encoded body is at least CompressThreshold bytes; a compressed
//	              body is one zstd frame that declares its content size
//
// Every message carries the cluster name so that a node can drop, and log,
// traffic from another cluster even if it reached the port some other way.
//
// Decoding never panics and never allocates in proportion to an
// attacker-chosen length beyond the message's own size: decompression is
// capped at MaxBody (and at what the compressed frame could really hold),
// every length in the body must fit in the bytes that follow it, and the
// decoded message takes at most about ten bytes of memory per body byte.
// Unknown types, versions and flags are errors, as are bodies that nest
// containers more than 16 deep; entries with invalid keys or all-zero totals,
// and metas with invalid keys or zero lives, make the whole message invalid.
//
// # Messages
//
// Bodies, by type (structs are msgpack arrays of their fields in this order):
//
//	1 Push           [Entries []Entry, Metas []Meta, Want []uint16]
//	2 DigestPull     [Groups []Hash]
//	3 DigestAck      []
//	4 Delta          [Entries []Entry, Metas []Meta, Hops uint8]
//	5 DigestBuckets  [Groups []uint16, Buckets []Hash]
//	6 Join           [Self Member, SentAt int64]
//	7 JoinAck        [Members []Member, SentAt int64]
//	8 Members        [Members []Member, SentAt int64]
//
//	Entry   [Key string, Replica uint64, Gen uint64, P uint64, N uint64]
//	Meta    [Key string, Gen uint64, TTLVer uint64, Deadline int64, Deleted int64]
//	Hash    [Index uint16, Hash uint64]
//	Member  [ID uint64, Name string, GossipAddr string, HTTPAddr string,
//	         Incarnation uint64, Heartbeat uint64, State uint8]
//
// An Entry is one replica's totals in one generation of a key; a Meta is a
// key's lifecycle state (crdt.Life: generation, expiry register, tombstone
// time), sent only when it is not zero. A receiver merges a message's metas
// before its entries, so an entry of a new generation finds that
// generation's deadline already in place. Senders keep one more rule (see
// package gossip): an entry travels with its key's non-zero meta in the
// same message.
//
// # Versions
//
// Version 2 (counter lifecycle) added Entry.Gen, the Meta element and the
// Metas field of Push and Delta. Version 1 and version 2 nodes refuse each
// other's messages (ErrVersion, in both directions): a version-1 node
// would otherwise merge entries of every generation into one, bringing
// deleted and expired counts back. A cluster moves to version 2 by a full
// restart: stop every node, upgrade, start them again (as for the transport
// handshake version 2). Nodes of different versions keep serving clients
// from their own state but do not converge until all speak the same
// version.
//
// A struct is always an array of exactly as many elements as it has fields
// (never nil, never a map), so changing a message's fields needs a new
// message type or a protocol version bump — with one exception: a field may
// be appended to a message (never to an element struct such as Member) if
// decoders go on accepting the shorter form, with the new field zero. Each
// such field says below which form it came with. Builds that predate the
// field refuse the longer form ("struct of N fields encoded with N+1").
//
// Fields appended so far:
//
//   - SentAt on Join, JoinAck and Members: the sender's wall clock when it
//     sent the message, in Unix milliseconds (0: not given). Receivers only
//     estimate and report clock differences from it; nothing depends on it.
package wire

import (
	"bytes"
	"errors"
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/dcounter/dcounter/internal/crdt"
)

// Version is the protocol version written in every message. Decode refuses
// any other (ErrVersion); see the package doc for what changed.
const Version = 2

// Type identifies a message's body.
type Type uint8

// Message types. ONLY APPEND TO THIS LIST: the numbers are on the wire.
const (
	TypePush          Type = 1 // entries and metas, optionally asking for the peer's newer ones back
	TypeDigestPull    Type = 2 // anti-entropy round: sender's group hashes
	TypeDigestAck     Type = 3 // digests are equal; nothing to repair
	TypeDelta         Type = 4 // eager dissemination of fresh entries and metas
	TypeDigestBuckets Type = 5 // bucket hashes of the groups that differ
	TypeJoin          Type = 6 // a new node asks a member for the member list
	TypeJoinAck       Type = 7 // the member list, answering Join
	TypeMembers       Type = 8 // periodic member-list gossip
)

func (t Type) String() string {
	switch t {
	case TypePush:
		return "push"
	case TypeDigestPull:
		return "digest_pull"
	case TypeDigestAck:
		return "digest_ack"
	case TypeDelta:
		return "delta"
	case TypeDigestBuckets:
		return "digest_buckets"
	case TypeJoin:
		return "join"
	case TypeJoinAck:
		return "join_ack"
	case TypeMembers:
		return "members"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

const (
	// MaxClusterLen is the longest cluster name.
	MaxClusterLen = 64
	// CompressThreshold is the body size from which bodies are compressed.
	CompressThreshold = 1024
	// MaxBody is the largest body accepted after decompression.
	MaxBody = 16 << 20
	// headerLen is the fixed part of the header, before the cluster name.
	headerLen = 4
	flagZstd  = 1
)

// Errors returned by Decode.
var (
	ErrShort         = errors.New("wire: message too short")
	ErrVersion       = errors.New("wire: unsupported protocol version")
	ErrUnknownType   = errors.New("wire: unknown message type")
	ErrFlags         = errors.New("wire: unknown flags")
	ErrWrongCluster  = errors.New("wire: message from another cluster")
	ErrBody          = errors.New("wire: malformed body")
	ErrTooLarge      = errors.New("wire: body too large")
	ErrBadEntry      = errors.New("wire: invalid entry")
	ErrBadMeta       = errors.New("wire: invalid meta")
	ErrBadClusterLen = errors.New("wire: invalid cluster name length")
)

// Message is implemented by every message body.
type Message interface {
	Type() Type
	validate() error
}

// Entry is crdt.Entry on the wire.
type Entry struct {
	_msgpack struct{} `msgpack:",as_array"`
	Key      string
	Replica  uint64
	Gen      uint64
	P, N     uint64
}

// Meta is crdt.Meta on the wire: a key's non-zero lifecycle state.
type Meta struct {
	_msgpack struct{} `msgpack:",as_array"`
	Key      string
	Gen      uint64
	TTLVer   uint64
	Deadline int64 // Unix ms; 0 = none
	Deleted  int64 // Unix ms; 0 = not a tombstone
}

func (m *Meta) isZero() bool { return m.Gen == 0 && m.TTLVer == 0 && m.Deadline == 0 && m.Deleted == 0 }

// Push carries entries and metas. When Want is non-empty the receiver
// answers with a Push of what it holds in those buckets that is newer than
// what is carried here (which is the sender's full contents of those
// buckets).
type Push struct {
	_msgpack struct{} `msgpack:",as_array"`
	Entries  []Entry
	Metas    []Meta
	Want     []uint16
}

// DigestPull opens an anti-entropy round with the sender's non-zero group hashes.
type DigestPull struct {
	_msgpack struct{} `msgpack:",as_array"`
	Groups   []Hash
}

// Hash is crdt.Hash on the wire.
type Hash struct {
	_msgpack struct{} `msgpack:",as_array"`
	Index    uint16
	Hash     uint64
}

// FromHashes converts digest slots for the wire.
func FromHashes(hs []crdt.Hash) []Hash {
	out := make([]Hash, len(hs))
	for i, h := range hs {
		out[i] = Hash{Index: h.Index, Hash: h.Hash}
	}
	return out
}

// ToHashes converts digest slots from the wire.
func ToHashes(hs []Hash) []crdt.Hash {
	out := make([]crdt.Hash, len(hs))
	for i, h := range hs {
		out[i] = crdt.Hash{Index: h.Index, Hash: h.Hash}
	}
	return out
}

// DigestAck says the digests matched.
type DigestAck struct {
	_msgpack struct{} `msgpack:",as_array"`
}

// DigestBuckets answers a DigestPull whose groups differ: the differing
// groups and the sender's non-zero bucket hashes within them.
type DigestBuckets struct {
	_msgpack struct{} `msgpack:",as_array"`
	Groups   []uint16
	Buckets  []Hash
}

// Delta disseminates fresh entries and metas eagerly. Hops counts forwards
// so far.
type Delta struct {
	_msgpack struct{} `msgpack:",as_array"`
	Entries  []Entry
	Metas    []Meta
	Hops     uint8
}

// Member is one member-list entry.
type Member struct {
	_msgpack    struct{} `msgpack:",as_array"`
	ID          uint64
	Name        string
	GossipAddr  string
	HTTPAddr    string
	Incarnation uint64
	Heartbeat   uint64
	State       uint8
}

// Join asks the receiver to add Self to the cluster and answer with JoinAck.
type Join struct {
	_msgpack struct{} `msgpack:",as_array"`
	Self     Member
	SentAt   int64 // appended: see the package doc
}

// JoinAck carries the sender's member list in answer to a Join, or to a
// Members message that was missing news the sender has (the pull half of
// push-pull member gossip). It is never answered.
type JoinAck struct {
	_msgpack struct{} `msgpack:",as_array"`
	Members  []Member
	SentAt   int64 // appended: see the package doc
}

// Members gossips the sender's member list.
type Members struct {
	_msgpack struct{} `msgpack:",as_array"`
	Members  []Member
	SentAt   int64 // appended: see the package doc
}

func (*Push) Type() Type          { return TypePush }
func (*DigestPull) Type() Type    { return TypeDigestPull }
func (*DigestAck) Type() Type     { return TypeDigestAck }
func (*DigestBuckets) Type() Type { return TypeDigestBuckets }
func (*Delta) Type() Type         { return TypeDelta }
func (*Join) Type() Type          { return TypeJoin }
func (*JoinAck) Type() Type       { return TypeJoinAck }
func (*Members) Type() Type       { return TypeMembers }

func newBody(t Type) Message {
	switch t {
	case TypePush:
		return &Push{}
	case TypeDigestPull:
		return &DigestPull{}
	case TypeDigestAck:
		return &DigestAck{}
	case TypeDigestBuckets:
		return &DigestBuckets{}
	case TypeDelta:
		return &Delta{}
	case TypeJoin:
		return &Join{}
	case TypeJoinAck:
		return &JoinAck{}
	case TypeMembers:
		return &Members{}
	}
	return nil
}

func validEntries(es []Entry) error {
	for i := range es {
		if crdt.ValidKey(es[i].Key) != nil || (es[i].P == 0 && es[i].N == 0) {
			return ErrBadEntry
		}
	}
	return nil
}

func validMetas(ms []Meta) error {
	for i := range ms {
		if crdt.ValidKey(ms[i].Key) != nil || ms[i].isZero() {
			return ErrBadMeta
		}
	}
	return nil
}

func (m *Push) validate() error {
	if len(m.Want) > crdt.NumBuckets {
		return ErrBadDigest
	}
	if err := validEntries(m.Entries); err != nil {
		return err
	}
	return validMetas(m.Metas)
}
func (m *Delta) validate() error {
	if err := validEntries(m.Entries); err != nil {
		return err
	}
	return validMetas(m.Metas)
}
func (m *DigestPull) validate() error {
	return validHashes(m.Groups, crdt.NumGroups)
}
func (m *DigestAck) validate() error { return nil }
func (m *DigestBuckets) validate() error {
	if len(m.Groups) > crdt.NumGroups {
		return ErrBadDigest
	}
	for _, g := range m.Groups {
		if int(g) >= crdt.NumGroups {
			return ErrBadDigest
		}
	}
	return validHashes(m.Buckets, crdt.NumBuckets)
}

// ErrBadDigest is returned for digests with more slots than the geometry
// has, or indexes out of range.
var ErrBadDigest = errors.New("wire: invalid digest")

func validHashes(hs []Hash, n int) error {
	if len(hs) > n {
		return ErrBadDigest
	}
	for _, h := range hs {
		if int(h.Index) >= n {
			return ErrBadDigest
		}
	}
	return nil
}
func (m *Join) validate() error    { return validMembers([]Member{m.Self}) }
func (m *JoinAck) validate() error { return validMembers(m.Members) }
func (m *Members) validate() error { return validMembers(m.Members) }

// Member limits.
const (
	MaxMembers    = 1 << 14
	MaxMemberName = 256
	MaxMemberAddr = 255
)

// ErrBadMember is returned for member entries that break the limits.
var ErrBadMember = errors.New("wire: invalid member")

func validMembers(ms []Member) error {
	if len(ms) > MaxMembers {
		return fmt.Errorf("%w: %d members, at most %d", ErrBadMember, len(ms), MaxMembers)
	}
	for i := range ms {
		m := &ms[i]
		if m.ID == 0 || len(m.Name) > MaxMemberName || m.GossipAddr == "" ||
			len(m.GossipAddr) > MaxMemberAddr || len(m.HTTPAddr) > MaxMemberAddr {
			return ErrBadMember
		}
	}
	return nil
}

// FromEntry converts an entry for the wire.
func FromEntry(e crdt.Entry) Entry {
	return Entry{Key: e.Key, Replica: uint64(e.Replica), Gen: e.Gen, P: e.P, N: e.N}
}

// ToEntry converts an entry from the wire.
func (e Entry) ToEntry() crdt.Entry {
	return crdt.Entry{Key: e.Key, Replica: crdt.ReplicaID(e.Replica), Gen: e.Gen, P: e.P, N: e.N}
}

// FromMeta converts a meta for the wire.
func FromMeta(m crdt.Meta) Meta {
	return Meta{Key: m.Key, Gen: m.Gen, TTLVer: m.TTL.Ver, Deadline: m.TTL.Deadline, Deleted: m.Deleted}
}

// ToMeta converts a meta from the wire.
func (m Meta) ToMeta() crdt.Meta {
	return crdt.Meta{Key: m.Key, Life: crdt.Life{Gen: m.Gen, TTL: crdt.TTL{Ver: m.TTLVer, Deadline: m.Deadline}, Deleted: m.Deleted}}
}

// FromContents converts a batch of entries and metas for the wire (the
// Entries and Metas fields of Push and Delta).
func FromContents(c crdt.Contents) (entries []Entry, metas []Meta) {
	entries = make([]Entry, len(c.Entries))
	for i, e := range c.Entries {
		entries[i] = FromEntry(e)
	}
	metas = make([]Meta, len(c.Metas))
	for i, m := range c.Metas {
		metas[i] = FromMeta(m)
	}
	return entries, metas
}

// ToContents converts the Entries and Metas fields of Push and Delta from
// the wire.
func ToContents(entries []Entry, metas []Meta) crdt.Contents {
	c := crdt.Contents{Entries: make([]crdt.Entry, len(entries)), Metas: make([]crdt.Meta, len(metas))}
	for i, e := range entries {
		c.Entries[i] = e.ToEntry()
	}
	for i, m := range metas {
		c.Metas[i] = m.ToMeta()
	}
	return c
}

var (
	// A 1 MiB window: the encoder keeps a history buffer the size of its
	// window for good (8 MiB by default). Messages are at most a few MiB
	// (MaxPushBytes) and repeat themselves at short range if at all.
	zenc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(1<<20))
	zdec = newZstdDecoder(MaxBody)
	bufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}
)

// maxZstdRatio bounds how much a zstd frame can expand: every block takes at
// least 4 bytes (3 of header, 1 of content) and yields at most 128 KiB. A frame
// declaring more than this times its own size is lying about its size.
const maxZstdRatio = (128 << 10) / 4

// newZstdDecoder returns the decoder used by decompress; limit is a second
// guard on the output size behind decompress's own check.
func newZstdDecoder(limit uint64) *zstd.Decoder {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0),
		zstd.WithDecoderMaxMemory(limit), zstd.WithDecodeAllCapLimit(true))
	if err != nil {
		panic(err) // only for invalid options: a programming error
	}
	return d
}

// decompress decodes a compressed body of at most limit bytes.
//
// The body must be a zstd frame that declares its content size (Encode's
// always do): the output buffer is allocated once, at that size, after
// checking it against limit and against what the frame's own size could
// possibly produce, and zd (made with WithDecodeAllCapLimit) never writes past
// it. Frames without a declared size are refused, because DecodeAll would
// grow its output by repeated appends, allocating several times limit for a
// bomb of a few kilobytes before noticing it is too large.
func decompress(zd *zstd.Decoder, body []byte, limit uint64) ([]byte, error) {
	var h zstd.Header
	if err := h.Decode(body); err != nil {
		return nil, fmt.Errorf("%w: zstd: %v", ErrBody, err)
	}
	switch {
	case h.Skippable || !h.HasFCS:
		return nil, fmt.Errorf("%w: zstd frame does not declare its content size", ErrBody)
	case h.FrameContentSize > limit:
		return nil, ErrTooLarge
	case h.FrameContentSize > maxZstdRatio*uint64(len(body)):
		return nil, fmt.Errorf("%w: zstd frame of %d bytes declares %d", ErrBody, len(body), h.FrameContentSize)
	}
	out, err := zd.DecodeAll(body, make([]byte, 0, h.FrameContentSize))
	if err != nil {
		if errors.Is(err, zstd.ErrWindowSizeExceeded) {
			return nil, ErrTooLarge
		}
		// Including output beyond the declared size, from this frame or
		// from another one after it.
		return nil, fmt.Errorf("%w: zstd: %v", ErrBody, err)
	}
	return out, nil
}

// Encode encodes m for cluster. It fails only for an invalid cluster name or
// an unencodable message (a programming error).
func Encode(cluster string, m Message) ([]byte, error) {
	if len(cluster) == 0 || len(cluster) > MaxClusterLen {
		return nil, ErrBadClusterLen
	}
	buf := bufs.Get().(*bytes.Buffer)
	defer bufs.Put(buf)
	buf.Reset()
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(buf)
	enc.UseCompactInts(true)
	if err := enc.Encode(m); err != nil {
		return nil, fmt.Errorf("wire: encode %v: %w", m.Type(), err)
	}
	body := buf.Bytes()
	out := make([]byte, headerLen+len(cluster), headerLen+len(cluster)+len(body))
	out[0], out[1], out[3] = Version, byte(m.Type()), byte(len(cluster))
	copy(out[headerLen:], cluster)
	if len(body) >= CompressThreshold {
		out[2] = flagZstd
		return zenc.EncodeAll(body, out), nil
	}
	return append(out, body...), nil
}

// Decode decodes a message, which must belong to cluster.
func Decode(cluster string, b []byte) (Message, error) {
	if len(b) < headerLen {
		return nil, ErrShort
	}
	if b[0] != Version {
		return nil, fmt.Errorf("%w %d", ErrVersion, b[0])
	}
	m := newBody(Type(b[1]))
	if m == nil {
		return nil, fmt.Errorf("%w %d", ErrUnknownType, b[1])
	}
	if b[2]&^flagZstd != 0 {
		return nil, ErrFlags
	}
	l := int(b[3])
	if l == 0 || l > MaxClusterLen {
		return nil, ErrBadClusterLen
	}
	if len(b) < headerLen+l {
		return nil, ErrShort
	}
	if got := b[headerLen : headerLen+l]; string(got) != cluster {
		return nil, fmt.Errorf("%w %q", ErrWrongCluster, got)
	}
	body := b[headerLen+l:]
	if b[2]&flagZstd != 0 {
		var err error
		if body, err = decompress(zdec, body, MaxBody); err != nil {
			return nil, err
		}
	}
	if err := checkBody(body); err != nil {
		return nil, fmt.Errorf("%w: %v %v", ErrBody, m.Type(), err)
	}
	dec := msgpack.GetDecoder()
	defer msgpack.PutDecoder(dec)
	r := bytes.NewReader(body)
	dec.Reset(r)
	if err := (&bodyDecoder{d: dec, r: r}).decode(m); err != nil {
		return nil, fmt.Errorf("%w: %v %v", ErrBody, m.Type(), err)
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrBody, r.Len())
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return m, nil
}
