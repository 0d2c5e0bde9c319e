// Package respserver is a node's Redis-protocol front end: it lets any Redis
// client (redis-cli, go-redis, redis-py, redis-benchmark) count on a
// service.Service. It owns the listener and the connections, decodes
// commands with package resp, checks them against one command table, and
// maps them onto the service; every service error is answered through
// service.RESPError (one table for HTTP and RESP).
//
// # Commands
//
// Counters read as Redis strings holding an integer. The table (commands.go)
// drives dispatch, arity checks, roles and COMMAND's answers:
//
//	read role   GET MGET EXISTS TTL PTTL TYPE SCAN DBSIZE
//	write role  INCR DECR INCRBY DECRBY DC.INCRBY DEL UNLINK GETDEL
//	            EXPIRE PEXPIRE PERSIST
//	any client  PING ECHO QUIT RESET SELECT 0 HELLO AUTH INFO CLIENT
//	            COMMAND CONFIG GET MULTI EXEC DISCARD
//	refused     SET SETNX SETEX PSETEX GETSET MSET MSETNX APPEND SETRANGE
//	            GETEX INCRBYFLOAT RENAME RENAMENX COPY MOVE SWAPDB KEYS
//	            FLUSHDB FLUSHALL WATCH UNWATCH, each with the reason
//
// A write is answered only once it is durable. Consecutive writes of a
// pipeline (up to 1024) or of an EXEC are one service.Writes call: one
// group, made durable by one log flush. Replies leave in command order.
// A read runs after the writes before it are durable.
//
// # SCAN
//
// The service lists keys in byte order from a position (the last key
// visited); Redis clients hold a cursor as a uint64. The server keeps one
// bounded table (maxCursors = 10,000, least recently used forgotten first)
// from random 63-bit numbers to positions; a forgotten or made-up cursor
// answers "ERR invalid cursor" and the client starts again from 0. MATCH's
// literal prefix becomes the listing's prefix, so a prefix scan reads only
// its keys; the rest of the pattern (Redis's glob) filters each page.
//
// # What a network attacker can do
//
// Anyone who reaches the port can open connections (at most MaxClients at
// once; beyond, one short error and a close) and send bytes. Before AUTH
// (when Auth is set) a connection may only send commands of at most 10
// arguments of 16 KiB (resp.UnauthenticatedLimits), gets "NOAUTH" for all
// but AUTH, HELLO, QUIT and RESET, and is closed AuthTimeout after it
// connected if it has not authenticated by then, so connections without a
// token cannot hold the client slots for long. A failed AUTH says nothing
// of why (WRONGPASS), tokens are compared in constant time (package auth),
// a connection is closed after 10 failed AUTHs, and the tokens' entropy
// (16+ random characters) is what stands against guessing. After AUTH, a role bounds the commands (NOPERM), and Limits
// bound each command (1M arguments, 512 KiB per argument by default); a
// MULTI queues at most 65,536 commands and a MATCH pattern is at most 1 KiB
// (its cost per key is at most its length times the key's). A protocol
// error is answered and the connection closed. Without TLS the
// tokens and counters cross the network in clear; with Config.TLS the
// listener speaks TLS only, and a handshake must finish within
// HandshakeTimeout. Inputs never panic the server: a command's errors are
// answered and the connection kept.
//
// # Clocks
//
// Nothing here reads the wall clock to decide anything: expiry times are
// the service's (TTLs are durations from the node's now). The monotonic
// clock sets the read deadlines (IdleTimeout, AuthTimeout,
// HandshakeTimeout) and INFO's uptime and CLIENT INFO's age, which are
// informational.
//
// # Shutdown
//
// Shutdown stops accepting, lets the commands being executed (with the
// pipelined writes gathered before them) finish and answer, and closes each
// connection before it executes another: a client can tell that a command
// without an answer was not executed, unless Shutdown's context ran out and
// the connections were cut while writes were in flight.
package respserver
