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
// queued and retries with exponential backoff (50ms doubling to 1s, jittered,
// timed by the injected clock); the next message after the backoff dials again.
// A peer that connects to us ends our backoff towards it at once: the network
// between us evidently works again (a healed partition, a restarted peer).
// Outbound connections whose sent data stays unacknowledged for
// UnackedTimeout (TCP_USER_TIMEOUT, default 2s) are abandoned and redialled,
// rather than left to TCP's ever longer retransmission backoff.
//
// A queue grows with use, up to QueueLen (default 1024) messages. A writer
// whose queue has stayed empty for IdleWriter (default 1m, on the injected
// clock) closes its connection and exits, and the next Send to that address
// starts a new one. At most MaxPeers (default 4096) addresses have a writer at
// once; Send to another returns ErrTooManyPeers. Both matter because the
// addresses a node sends to can come from its peers: without a key, the from
// address of a Hello is whatever the dialer claims.
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
// The dialer gives the answer HandshakeTimeout to arrive. The Handler's from
// argument is the address the dialer declared in its Hello; it is
// authenticated only when a key is set.
//
// # Inbound limits
//
// What one inbound connection can cost, and for how long:
//
//   - At most MaxInbound (default 1024) are served at once; the acceptor
//     closes any more as soon as it accepts them (counted in Stats.Rejected).
//   - The Hello must arrive within HandshakeTimeout (default 5s), in a frame
//     of at most 512 bytes.
//   - After the handshake each frame must be complete within IdleTimeout
//     (default 2m) of the previous one, or the connection is closed; a
//     dialer that was merely quiet redials when it next has something to say.
//   - Each is served by one goroutine with a 16 KiB read buffer, and keeps a
//     frame buffer of up to 64 KiB between frames. A frame's body may be up
//     to MaxFrame (default 32 MiB); its buffer starts at 64 KiB and doubles
//     only as bytes arrive (sealed frames are opened in place), so a
//     connection holds at most MaxFrame of payload at a time: MaxInbound ×
//     MaxFrame in all, for peers that really send that much.
//   - The Handler runs on the connection's goroutine, so a slow Handler
//     slows its own connection (through TCP flow control) and no other.
//
// # Invariants
//
//   - Nothing a peer sends makes the transport panic or allocate beyond the
//     bytes it actually sent (bounded by MaxFrame); a bad connection is closed,
//     logged and counted in Stats.Rejected, and no other connection notices.
//   - Send never blocks and never modifies the payload.
//   - Close stops every goroutine the transport started before returning.
package transport
