// Package transport moves opaque gossip messages between dcounter nodes.
//
// Two implementations share the Endpoint surface (Addr, Send, Close):
//
//   - TCP: persistent, length-prefixed connections, authenticated and
//     encrypted per connection when a cluster key is set (a Noise handshake
//     keyed by the cluster key), built to survive anything a peer can send.
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
// address of a Hello is whatever the dialer claims, and with one, whatever a
// key holder claims.
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
// Without keys the body of a message frame is the message itself. With
// keys (Config.Keys) every frame after the dialer's first is sealed with
// the connection's session key for its direction (see Handshake):
//
//	offset  size    field
//	0       4       body length n, big-endian uint32
//	4       n-16    AES-256-GCM ciphertext of the payload
//	4+n-16  16      tag
//
// The nonce is not sent: it is the number of frames sealed before this one
// in the same direction of the same connection (a 64-bit counter, as Noise
// defines it). The 4-byte length prefix is the additional authenticated
// data. So a frame that is altered, cut, extended, repeated, dropped,
// reordered or taken from another connection fails to open, and a frame
// that fails to open closes the connection. Frames may be far larger than
// Noise's 65535-byte transport messages: that limit belongs to Noise's own
// framing, which the length prefix replaces; AES-GCM is sound up to 64 GiB
// per message, and MaxFrame caps frames at 1 GiB.
//
// # Handshake
//
// Handshake version 2. The dialer's first frame, the opening, is always in
// plaintext and at most 512 bytes:
//
//	offset  size  field
//	0       4     magic "DCNT"
//	4       1     handshake version (HandshakeVersion, 2)
//	5       1     mode: 0 no key, 1 Noise_NNpsk0_25519_AESGCM_SHA256
//
// followed, in mode 0, by the Hello:
//
//	6       1     cluster name length C (1..64)
//	7       C     cluster name
//	7+C     1     advertise address length A (1..255)
//	8+C     A     dialer's advertise address ("host:port")
//
// and in mode 1 by:
//
//	6       8     ID of the dialer's primary cluster key (clusterkey.ID)
//	14      32    Noise message 1: the dialer's ephemeral X25519 public key
//	46      16    Noise message 1: AES-GCM tag of its empty payload
//
// Nothing may follow. In mode 1 the Noise pre-shared key is the dialer's
// primary key derived for clusterkey.Gossip (HKDF-SHA256), and the first
// 14 bytes of the opening are the Noise prologue: changing the version,
// mode or key ID in flight makes the handshake fail.
//
// Every refusal is an answer frame, in the layout of every handshake
// version, so a peer of any version can log why it was refused:
//
//	offset  size  field
//	0       4     magic "DCNT"
//	4       1     handshake version of the sender
//	5       1     code: 0 ok, 1 wrong cluster, 2 unsupported version,
//	              3 authentication failed, 4 bad hello
//	6       1     sender's cluster name length C (0..64)
//	7       C     sender's cluster name
//	7+C     1     reason length R (0..255)
//	8+C     R     reason: UTF-8 text for the dialer's log
//
// After a refusal the acceptor closes the connection.
//
// Mode 0 (no keys on either side): the acceptor checks the Hello and sends
// one answer, code 0 or a refusal, in plaintext. Then the dialer sends
// plaintext message frames. This is the only exchange a keyless node
// speaks; a keyless node refuses a mode-1 opening, and a keyed node a
// mode-0 one, each with code 3 and a reason that says which side lacks a
// key.
//
// Mode 1, the acceptor finds the key by its ID in its keyring (any key of
// the ring; an unknown ID is refused with code 3, naming the ID), and checks
// message 1's tag (refused with code 3 if it does not authenticate). It then
// answers, in plaintext:
//
//	offset  size  field
//	0       4     magic "DCNT"
//	4       1     version 2
//	5       1     code 0
//	6       32    Noise message 2: the acceptor's ephemeral public key
//	38      16    Noise message 2: tag of its empty payload (after e, ee)
//
// Both sides now hold the Noise Split: one AES-256-GCM key for each
// direction, derived from the pre-shared key and the two ephemeral keys. The
// dialer sends its Hello (the mode-0 fields from offset 6 on: cluster,
// address) as its first sealed frame (nonce 0); the acceptor checks it and
// sends its answer (the layout above, code 0 or a refusal) as its only
// sealed frame (nonce 0 of the other direction). Then the dialer sends
// sealed message frames (nonces 1, 2, ...) and the acceptor only reads.
// When the acceptor cannot open the sealed Hello it refuses in plaintext
// (code 3), since the dialer evidently has other session keys.
//
// The Hello travels sealed, after the key exchange, so that every byte the
// Handler ever sees is under keys that did not exist before this
// connection. The dialer gives the handshake HandshakeTimeout; so does the
// acceptor. The Handler's from argument is the address in the Hello: with
// keys, it was sent by a holder of a cluster key over this very connection.
//
// A peer speaking handshake version 1 (which sealed each frame with the raw
// cluster key and a random nonce) cannot talk to this version, in either
// direction, and each side says so: a version-2 acceptor answers a
// version-1 Hello with code 2 ("peer speaks handshake version 1, this node
// 2"), or code 4 when the Hello was sealed (it reads as bad magic, and the
// reason says a version-1 node with a key may be the cause); a version-1
// acceptor answers a version-2 opening with code 2 (no key) or code 3 ("did
// not open with the accepting node's key"), which a version-2 dialer logs
// with the peer's version. Upgrade every node of a cluster to version 2
// before relying on gossip between them: nodes of different versions keep
// serving clients, and converge once all speak the same version.
//
// # Why Noise, this pattern and this suite
//
// The cluster key is a shared secret and nodes have no certificates, so the
// handshake is a pre-shared-key one. TLS 1.3 has PSK modes, but Go's
// crypto/tls exposes them only for resumption, not for external PSKs, and
// TLS would bring certificates, ALPN and record framing this protocol does
// not need. A hand-made exchange (nonces and HMACs) would be small, but its
// proofs would be ours alone. Noise is a published framework with formal
// analysis, and github.com/flynn/noise a small, widely used implementation
// checked against the specification's test vectors.
//
// NNpsk0: neither side has a static key (all nodes are equal holders of
// the cluster key), and the PSK is mixed in before the first message
// (psk0), so that only key holders can produce a message 1 the acceptor
// will answer with work beyond checking a tag. Each side contributes a
// fresh ephemeral key, which gives what the static sealing lacked:
//
//   - Replay-proof: a recorded opening replayed later, to the same or a
//     rebuilt cluster, gets a new acceptor ephemeral key, so new session
//     keys; the recorded sealed Hello does not open with them, and the
//     acceptor refuses the connection before any message reaches the
//     Handler ("the hello did not authenticate (a replayed or tampered
//     connection)").
//   - Forward-secret: the session keys depend on ephemeral private keys
//     that are never stored, so a cluster key stolen later does not
//     decrypt recorded traffic.
//
// AESGCM and SHA256 rather than ChaChaPoly and BLAKE2s: the servers dcounter
// runs on have AES instructions, for which Go's AES-GCM is both the fastest
// and constant-time AEAD, and SHA-256 and AES-GCM come from Go's standard
// library; the previous sealing was AES-256-GCM too. On CPUs without AES
// instructions ChaChaPoly would be faster; the mode byte leaves room for it.
//
// # Security: what an attacker on the network can and cannot do
//
// Without a cluster key an attacker cannot: read gossip; inject, alter,
// reorder, replay or drop individual messages undetected; replay a recorded
// connection (to the same or a rebuilt cluster); make a node accept a
// connection or its claimed address; make a keyed node dial through him and
// accept his answers (a man in the middle cannot produce message 2 or the
// sealed answer, both of which need the key). He can:
//
//   - learn that a port speaks this protocol, its version, its cluster name
//     (in refusals) and the public IDs of the keys connections use (they
//     reveal nothing about the keys);
//   - probe key IDs: an unknown ID is refused at once, without any
//     public-key work;
//   - replay a recorded opening, which costs the acceptor two X25519
//     operations and one goroutine until the Hello fails to open or
//     HandshakeTimeout (5s) passes;
//   - hold connection slots: up to MaxInbound (1024) connections, each for
//     HandshakeTimeout before a complete handshake and IdleTimeout after
//     (only key holders get that far); more are closed on accept;
//   - cut, delay or drop connections, as anyone on the path can; gossip
//     redials and repairs.
//
// Anyone holding a key of the ring is a full member: the handshake proves
// key possession, not which node is speaking, so the from address is
// authenticated as "claimed by a key holder". Protect the key like the data.
//
// Clocks play no part: the handshake has no timestamps, freshness comes from
// the ephemeral keys, so a node whose clock is off by any amount, or steps,
// handshakes like any other. Only timeouts use time, measured locally.
//
// # Key rotation
//
// A keyring (Config.Keys) is one or more keys; the first (primary) is used
// to dial, every key is accepted. To replace key A with key B without
// downtime, finish each step on every node (rolling restarts) before the
// next:
//
//  1. add B: every node runs with A,B (dials with A, accepts both);
//  2. make B primary: every node runs with B,A (dials with B, accepts both);
//  3. remove A: every node runs with B.
//
// At every moment of this sequence every dialer's primary key is in every
// acceptor's ring. Skipping a step breaks that: a node with only B refuses
// dialers still on A, naming the unknown key ID in both nodes' logs.
//
// # Inbound limits
//
// What one inbound connection can cost, and for how long:
//
//   - At most MaxInbound (default 1024) are served at once; the acceptor
//     closes any more as soon as it accepts them (counted in Stats.Rejected).
//   - The whole handshake must complete within HandshakeTimeout (default
//     5s), in frames of at most 512 bytes; an unknown key ID or a message 1
//     that does not authenticate is refused before any public-key work.
//   - After the handshake each frame must be complete within IdleTimeout
//     (default 2m) of the previous one, or the connection is closed; a
//     dialer that was merely quiet redials when it next has something to say.
//   - Each is served by one goroutine with a 16 KiB read buffer, and keeps a
//     frame buffer of up to 64 KiB (plus a tag) between frames. A frame's body
//     may be up to MaxFrame (default 32 MiB); its buffer starts there and doubles
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
