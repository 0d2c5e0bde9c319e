// Package discovery is dcounter's discovery server: a registry of live nodes
// that new nodes read to find peers. It is a convenience, never a single point
// of failure: nodes gossip their member lists among themselves, and a running
// cluster keeps working and converging while this server is down.
//
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
// The package is split by job: Registry (registry.go) is the pure core —
// entries, TTL, validation, bounds, no I/O, time passed in; Server
// (server.go) is its HTTP face; persist.go reads and writes the data file.
// The client nodes and gateways use lives with them, in discoveryclient.
package discovery
