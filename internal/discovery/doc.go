// Package discovery is dcounter's discovery server: a registry of live nodes
// that new nodes read to find peers. It is a convenience, never a single point
// of failure: nodes gossip their member lists among themselves, and a running
// cluster keeps working and converging while this server is down.
//
//	POST /challenge  → 200 {"nonce":"<22 base64url chars>","ttl_ms":10000} (keyed servers only; 404 otherwise)
//	POST /register   {"id","name","gossip_addr","http_addr"} → 200 {"ttl_ms":…}
//	POST /heartbeat  same body; 404 if the id is unknown (register again)
//	GET  /peers      [{"id","name","gossip_addr","http_addr","last_seen"}, …] (live entries)
//	GET  /health     {"status":"ok","entries":N}
//	GET  /metrics    Prometheus metrics
//
// An entry expires TTL after its last register or heartbeat. The registry
// optionally persists to a file so that a restarted server answers /peers at
// once; either way every live node is relearned within two heartbeat
// intervals, because heartbeats for unknown ids are answered 404 and nodes
// register again.
//
// # Authentication
//
// A server given a keyring (--cluster-key, the nodes' key) authenticates
// every register, heartbeat and peers request by challenge and response, so
// that nothing depends on clocks agreeing:
//
//  1. The client sends POST /challenge and gets a nonce: 16 random bytes,
//     base64url without padding. The server remembers it for NonceTTL (10s)
//     on its own monotonic clock. At most MaxNoncesPerSource (64) are
//     outstanding per client IP (beyond: 429) and MaxNonces (4096) in all
//     (beyond: a random one is dropped).
//
//  2. The client sends its request with
//
//     Authorization: DCounter-HMAC-SHA256 key=<key ID, 16 hex>, nonce=<nonce>, mac=<base64url>
//
//     where mac = HMAC-SHA256 under the key derived for
//     clusterkey.Discovery of the length-prefixed parts (method, path,
//     nonce bytes, body bytes) — clusterkey.Key.MAC. The client signs with
//     its primary key; the server accepts any key of its ring.
//
//  3. The server removes the nonce from its table (whatever the outcome:
//     each nonce gets one try), checks it was outstanding and unexpired,
//     finds the key by its ID and compares the MAC in constant time. Any
//     failure is 401 with WWW-Authenticate: DCounter-HMAC-SHA256, counted
//     in dcounter_discovery_refused_total{reason="unauthenticated"},
//     logged at most once a second, and changes nothing.
//
//  4. The answer carries Dcounter-Response-Mac: base64url of MAC("response",
//     nonce, status in decimal, body) under the same key, which the client
//     checks: a forged peer list or a forged "ok" is refused.
//
// A recorded request is useless later: its nonce is spent (or expired, or
// forgotten by a restarted server). A request cannot be moved to another
// path or given another body. The nonce proves freshness without any clock
// being compared with another.
//
// # Bounds
//
// At most MaxEntries entries in all (503 beyond) and MaxPerSource per client
// IP address (429 beyond; counted by reason in
// dcounter_discovery_refused_total). Without a keyring, a live id can only
// be refreshed from the IP address that registered it (409 otherwise), so
// nobody else can take a running node's entry over; with one, any key
// holder may (a node that moved to a new address).
//
// # Clocks
//
// Expiry and nonce lifetimes use the server's monotonic clock: a wall-clock
// step neither keeps entries alive nor kills them. last_seen (wall clock) is
// informational. Entries read back from the data file live at most one TTL
// from the restart, whatever their recorded last_seen.
//
// The package is split by job: Registry (registry.go) is the pure core —
// entries, TTL, validation, bounds, no I/O, time passed in; Server
// (server.go) is its HTTP face; auth.go holds the scheme and the challenge
// store; persist.go reads and writes the data file. The client nodes and
// gateways use lives with them, in discoveryclient.
package discovery
