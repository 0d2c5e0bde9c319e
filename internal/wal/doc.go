// Package wal is dcounter's write-ahead log: append-only segments of
// checksummed records, snapshots that bound recovery time and disk use, and
// recovery that cuts a torn tail but refuses to paper over corruption.
//
// # Records and sequence numbers
//
// Every Enqueue or AppendAsync becomes one record with the next log sequence number (LSN).
// A record holds absolute CRDT entries (key, replica, P, N), so replaying a
// record twice, or replaying records out of order, is harmless; recovery is
// "merge everything".
//
// A snapshot taken at LSN X holds a state that includes every record with
// LSN ≤ X. The caller makes that true by reading LastLSN and capturing its
// state in one critical section that every Enqueue also enters before it
// is called (see package node). Recovery loads the newest snapshot and
// replays the records after its LSN; segments whose records are all ≤ X are
// deleted once the snapshot is durable.
//
// # Group commit
//
// One writer goroutine drains every queued record, writes them with one
// write(2) and, under SyncAlways, one fdatasync(2); only then do the records
// of that batch complete. Under SyncInterval they complete once the batch is
// written to the OS and a ticker syncs every interval; under SyncNone nothing
// is synced except at snapshots and Close. A failed write or sync is sticky:
// every later Enqueue fails (an fsync error cannot be retried safely).
//
// # Files
//
// Under the log's directory, segments are named by their first LSN and
// snapshots by the LSN they cover, both as 16 hex digits:
// 0000000000000001.wal, 00000000000a2c4f.snap. Integers are little-endian;
// uvarint is encoding/binary's.
//
// Segment:
//
//	offset  size  field
//	0       8     magic "DCWAL\x00\x00\x01" (the last byte is the format version)
//	8       8     LSN of the first record
//	16      ...   records
//
// Record:
//
//	offset  size  field
//	0       4     payload length n (1..MaxRecord)
//	4       4     CRC-32C (Castagnoli) of the payload
//	8       n     payload: u64 LSN, uvarint entry count, entries,
//	              then optionally a tag (0x02, or 0x01 from older versions)
//	              and one idempotency key (below)
//
// Entry (in records and snapshots):
//
//	uvarint key length (1..512), key bytes, u64 replica ID, uvarint P, uvarint N
//
// Snapshot:
//
//	offset  size  field
//	0       8     magic "DCSNAP\x00\x01" (the last byte is the format version)
//	8       8     LSN covered
//	16      8     entry count
//	24      ...   entries
//	...     ...   optionally a tag (0x02, or 0x01 from older versions),
//	              uvarint key count, idempotency keys
//	end-4   4     CRC-32C of every byte before it
//
// Idempotency key (in records and snapshots):
//
//	uvarint key length (1..255), key bytes, u64 request fingerprint,
//	varint value answered (zigzag), varint At (zigzag; under 0x02 the
//	remembered time in milliseconds, under 0x01 a Unix-millisecond expiry)
//
// Snapshots are written to a temporary file, synced, renamed into place and
// the directory synced, so a snapshot file is either whole or absent.
//
// # Idempotency keys
//
// A write that carries a client's Idempotency-Key is logged in one record
// with the key, the request's fingerprint and the value it answered, so
// after a crash the write and its key are back together or not at all.
// Snapshots hold the keys still live when they were taken. Recovery hands
// every key to Options.OnIdem, oldest first (snapshot, then records).
//
// At is not a wall-clock time. It is the writer's remembered time: a clock
// that the caller (package node) advances only with the monotonic clock
// while it runs and continues after a restart from the largest value it
// recovered, so that a key's age is the time it has actually been
// remembered, whatever the system clock did meanwhile. The log stores it
// and never interprets it.
//
// Older versions wrote the section with the tag 0x01 and a wall-clock
// expiry (Unix milliseconds) in place of At. Such keys are still read, with
// Idem.Legacy set; the caller decides what they mean (package node keeps
// them a full window from recovery).
//
// Neither section changed the version byte in the magic, so an older build
// cannot tell them from damage: a build without the section, or with only
// the tag 0x01, sees bytes after the last entry: it cuts such a record as a
// torn tail if it ends the log, and otherwise, as for a snapshot holding
// keys, reports corruption. Going back to such a build is not supported. The testdata directory holds golden
// files with and without the section, and with the tag 0x01 as an older
// version wrote them.
//
// # Recovery
//
// Records must carry consecutive LSNs, within and across segments, starting
// at or before the snapshot's LSN + 1, except that LSNs the snapshot covers
// may be missing: a snapshot's LSN is the last one queued when it was taken,
// so a crash can lose records it covers (they were never written, or their
// segment's removal persisted before an older one's), and the next segment
// then starts after the snapshot's LSN.
//
// A record that is cut short, or fails its length, checksum, LSN or decoding
// test, is a torn tail when it is in the last segment and no record that
// continues the log follows it: it is cut off, the cut synced before a new
// segment follows it, and the log says how many bytes went.
//
// A record at offset c after a bad record at offset b continues the log
// when it is whole (length, checksum, entries and idempotency key decode)
// and its LSN is between e and e + (c-b)/17, where e is the LSN the bad
// record should have carried and 17 is the smallest record's size: the
// LSNs the damaged bytes could have held, and no more. Every record the log
// wrote after a damaged one passes this test, so a bad record followed by
// records the log wrote is never mistaken for a torn tail, even when a torn
// record ends the segment. A frame that a client placed inside a key fails
// it unless it carries one of those few LSNs; if it does, recovery refuses
// to start rather than cut, never the reverse.
//
// Anything else — a bad record followed by one that continues the log, a
// bad record in an older segment, a gap in the LSNs that the snapshot does
// not cover, an unreadable snapshot — is corruption:
// Open fails naming the file and offset, unless DiscardCorrupt is set, in
// which case the bad region is skipped (and reported in Recovery) and the
// caller must take a new replica ID, since what was skipped may have included
// acknowledged writes of its own.
//
// Reading never allocates in proportion to a length read from disk: lengths
// are checked against the bytes actually present first.
//
// # Code
//
// The format above is encoded and decoded in format.go (records, entries,
// idempotency keys, segment names and headers) and snapshot.go (snapshot
// files), which know nothing of the writer. The writer — the group-commit
// goroutine, the fsync policy and segment rotation — is in writer.go;
// recovery is in recover.go; wal.go holds the API (Open, Log, Options).
package wal
