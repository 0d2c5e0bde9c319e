// Package transport moves opaque gossip messages between dcounter nodes.
//
// Two implementations share the Endpoint surface (Addr, Send, Close):
//
//   - TCP: persistent, length-prefixed, optionally encrypted connections,
//     built to survive anything a peer can send.
//   - MemNetwork: an in-memory network for tests that can lose, duplicate,
//     delay (and so reorder) messages and partition or cut links, driven by
//     an injected clock.
//
// A message is a []byte the transport never looks into and never modifies;
// package wire gives it meaning. Delivery is best effort: gossip repairs
// whatever is lost, so a slow or dead peer costs its own messages, never
// anyone else's.
//
// # TCP connections
//
// Connections are one-way. To send to a peer, a node dials it (once, then
// keeps the connection), performs the handshake below and then only writes
// message frames; the accepting side only reads them. Two nodes that talk
// both ways therefore hold two connections. Every peer address has its own
// queue and writer goroutine, so Send never blocks: it returns ErrQueueFull
// when the peer's queue is full. When a dial fails the writer drops what is
// queued and retries with exponential backoff (50ms doubling to 5s, jittered,
// timed by the injected clock); the next message after the backoff dials again.
//
// # Frames
//
// Everything on a connection, the handshake included, travels in frames:
//
//	offset  size  field
//	0       4     body length n, big-endian uint32, 1..MaxFrame
//	4       n     body
//
// A length of 0 or above the receiver's MaxFrame (default 32 MiB) closes the
// connection without reading or allocating the body; handshake frames are
// limited to 512 bytes. Bodies are read into memory as their bytes arrive, so
// a peer that announces a large frame and sends little costs little.
//
// Without a key the body of a message frame is the message itself. With a
// key (Config.Key, 32 bytes) every body, the handshake included, is sealed
// with AES-256-GCM:
//
//	offset  size    field
//	0       12      random nonce
//	12      n-12    ciphertext of the plaintext body, then the 16-byte tag
//
// The frame's 4-byte length prefix is the additional authenticated data, so a
// frame cannot be cut or extended undetected. A frame that fails to open
// closes the connection. Sealing gives confidentiality and integrity per
// frame; it does not stop an attacker from replaying recorded frames, which
// is harmless for gossip of CRDT state (merging old state changes nothing).
//
// # Handshake
//
// The dialer's first frame is a Hello (plaintext body shown; sealed with a key):
//
//	offset  size  field
//	0       4     magic "DCNT"
//	4       1     handshake version (HandshakeVersion, currently 1)
//	5       1     cluster name length C (1..64)
//	6       C     cluster name
//	6+C     1     advertise address length A (1..255)
//	7+C     A     dialer's advertise address ("host:port")
//
// Nothing may follow the address. The acceptor answers with one frame:
//
//	offset  size  field
//	0       4     magic "DCNT"
//	4       1     handshake version (1)
//	5       1     code: 0 ok, 1 wrong cluster, 2 unsupported version,
//	              3 authentication failed, 4 bad hello
//	6       1     acceptor's cluster name length C (0..64)
//	7       C     acceptor's cluster name
//	7+C     1     reason length R (0..255)
//	8+C     R     reason: UTF-8 text for the dialer's log
//
// The answer keeps this layout in every handshake version, so that a peer of
// any version can read why it was refused. After any code but ok the acceptor
// closes the connection. The answer is sealed when the acceptor has a key and
// the Hello opened with it; when the Hello failed to open (the dialer has no
// key, or another key) the answer is sent in plaintext so that the dialer can
// log the reason. A dialer never trusts a plaintext answer when it has a key:
// it uses it only to explain the failure in its log.
//
// The acceptor gives the Hello HandshakeTimeout (default 5s) to arrive and
// serves at most MaxInbound (default 1024) connections at once; the dialer
// gives the answer the same time. The Handler's from argument is the address
// the dialer declared in its Hello; it is authenticated only when a key is set.
//
// # Invariants
//
//   - Nothing a peer sends makes the transport panic or allocate beyond the
//     bytes it actually sent (bounded by MaxFrame); a bad connection is closed,
//     logged and counted in Stats.Rejected, and no other connection notices.
//   - Send never blocks and never modifies the payload.
//   - Close stops every goroutine the transport started before returning.
package transport
