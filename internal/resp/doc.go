// Package resp is the Redis protocol codec: a Reader that parses the commands
// a Redis client sends (RESP arrays of bulk strings, and inline commands typed
// as a line of words, with Redis's quoting rules) and a Writer that encodes
// replies in RESP2 or RESP3. It knows nothing of dcounter.
//
// # Limits
//
// Anyone who can reach the port can send any bytes, before and after AUTH, so
// the Reader decides from a header alone whether it will accept what the
// header announces, and it allocates only for bytes that have arrived, never
// for a length that was merely claimed. Each limit stops one attack:
//
//   - Limits.MaxArgs (default 1024*1024, as Redis) bounds the elements of one
//     command array: "*2147483647\r\n" would otherwise make a server size an
//     argument table for two billion entries. Refused with "ERR Protocol
//     error: invalid multibulk length".
//   - Limits.MaxBulk (default 512 KiB; dcounter's keys are short) bounds one
//     argument: "$1073741824\r\n" is refused at once with "ERR Protocol error:
//     invalid bulk length" instead of buffering a gigabyte.
//   - Limits.MaxInline (default 64 KiB, Redis's PROTO_INLINE_MAX_SIZE) bounds
//     an inline command line and every header line ("*N", "$N"): a peer that
//     never sends a line end cannot grow the buffer forever ("too big inline
//     request", "too big mbulk count string", "too big bulk count string").
//   - UnauthenticatedLimits (10 arguments of at most 16 KiB, as Redis since
//     CVE-2021-32675) apply until the connection has authenticated, so a peer
//     without a token cannot make the node hold more than a few KiB
//     ("unauthenticated multibulk length", "unauthenticated bulk length").
//   - Limits.MaxQuery (default 1 GiB, Redis's client-query-buffer-limit)
//     bounds one whole command; past it ReadCommand returns ErrQueryTooBig and
//     the connection is closed without a reply, as Redis does.
//
// The limits hold for inline commands too: a command returned by ReadCommand
// never has more than MaxArgs arguments nor an argument longer than MaxBulk.
//
// Where Redis's outcome depends on how the input was split into reads, the
// Reader picks the outcome that does not: a header or inline line longer than
// MaxInline is refused even when its line end came in the same read (Redis
// would parse it). Before AUTH an inline command is held to the same 10
// arguments of 16 KiB as an array (Redis answers it with NOAUTH instead).
//
// # Invariants
//
// A Reader gives the same commands and the same error whatever the chunks
// the input arrives in (a slow client sending one byte at a time gets what a
// fast one gets), and in steady state it allocates nothing per command: the
// arguments point into one reused buffer, valid until the next ReadCommand.
// The buffer grows only as data arrives and shrinks back after a large command.
// A protocol error is final: the caller answers it and closes the connection,
// as Redis does. The error texts are Redis 7's, byte for byte, because clients
// and tests match on them.
//
// A Writer appends every reply to one buffer with strconv.Append*, so a reply
// costs no allocation; Flush sends the buffer.
//
// The Reader is fuzzed (FuzzReader: arbitrary bytes, whole and split at any
// point, must agree, never panic and never exceed a limit; FuzzRoundTrip:
// encoded commands read back equal). Run them with `make fuzz-resp`.
package resp
