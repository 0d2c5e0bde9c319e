// Package wal is dcounter's write-ahead log: append-only segments of
// checksummed records, snapshots that bound recovery time and disk use, and
// recovery that cuts a torn tail but refuses to paper over corruption.
//
// # Records and sequence numbers
//
// Every Enqueue or AppendAsync becomes one record with the next log
// sequence number (LSN); a batch too big for one record is split. A record
// holds one change's contents (crdt.Contents): absolute CRDT entries (key,
// replica, generation, P, N) and metas, a key's replicated lifecycle
// (generation, expiry register, deletion time). A write with a TTL is one
// entry and one meta in one record, a delete one meta. Replaying a record
// twice, or replaying records out of order, is harmless: recovery is
// "merge everything" (crdt.Keyspace.MergeKey and MergeMeta), and a
// tombstone drops the older generations' entries whichever is read first.
//
// A snapshot taken at LSN X holds a state that includes every record with
// LSN ≤ X. The caller makes that true by reading LastLSN and capturing its
// state in one critical section that every Enqueue also enters before it
// is called (see package node). Recovery loads the newest snapshot and
// replays the records after its LSN; segments whose records are all ≤ X are
// deleted once the snapshot is durable. The active segment is kept, unless
// it holds at least 1 MiB and the snapshot covers all of it: it is then
// closed (the next record starts a new segment) and deleted too, so that a
// log that stops growing after a burst of writes does not keep the burst.
//
// # Group commit
//
// A batch is every queued record, written with one write(2) and, under
// SyncAlways, one fdatasync(2); only then do the records of that batch
// complete. Callers queue records (EnqueueGroup) and then Wait for them. A
// Wait whose records are the only ones anybody waits for, with no batch
// being written, writes the batch itself, on its own goroutine: a lone
// write costs no hand-off to another goroutine and back. Otherwise the
// writer goroutine writes it, right after the batch in progress, gathering
// every group that queued meanwhile. While writes have lately shared
// batches, Wait and the writer first let other goroutines run, so that
// writers about to queue join the batch; after a batch of one waiting
// write they do not, since that yield costs a thread wake-up and finds
// nobody. One mutex makes sure a single goroutine writes the file at a
// time, and batches keep the queue's order. Under SyncInterval they
// complete once the batch is written to the OS and a ticker syncs every
// interval; under SyncNone nothing is synced except at snapshots and
// Close. A failed write or sync is sticky: every later Enqueue fails (an
// fsync error cannot be retried safely).
//
// # Files
//
// Under the log's directory, segments are named by their first LSN and
// snapshots by the LSN they cover, both as 16 hex digits:
// 0000000000000001.wal, 00000000000a2c4f.snap. Integers are little-endian;
// uvarint and varint are encoding/binary's (varint is zigzag).
//
// The last byte of each file's magic is its format version. This build
// writes version 2 and reads versions 1 and 2; the layouts below are
// version 2, and the differences of version 1 follow them.
//
// The writer keeps the active segment filled with zeros Options.Prealloc
// (1 MiB) ahead of its last record, writing them before the records that
// overwrite them, and cuts the zeros when the segment is closed (rotation
// or Close). An fdatasync(2) of appended records then finds the file's size
// unchanged and writes only their data: on ext4 and XFS, growing the file
// makes every such fsync also write the inode, a second device write and a
// second wait. Zeros are written rather than fallocate(2)d, because an
// allocated but unwritten extent is converted, a metadata write, on first
// use. A segment left by a crash may end in up to Prealloc bytes of zeros.
//
// Segment:
//
//	offset  size  field
//	0       8     magic "DCWAL\x00\x00\x02" (the last byte is the format version)
//	8       8     LSN of the first record
//	16      ...   records
//
// Record:
//
//	offset  size  field
//	0       4     payload length n (1..MaxRecord)
//	4       4     CRC-32C (Castagnoli) of the payload
//	8       n     payload:
//	                u64 LSN
//	                uvarint entry count, entries
//	                optional meta section: 0x03, uvarint meta count (≥ 1), metas
//	                optional idempotency section: 0x02, one idempotency key
//
// Entry (in records and snapshots):
//
//	uvarint key length (1..512), key bytes, u64 replica ID,
//	uvarint generation, uvarint P, uvarint N
//
// Meta (in records and snapshots):
//
//	uvarint key length, key bytes (a key crdt.ValidKey accepts),
//	uvarint generation, uvarint TTL version,
//	varint deadline (Unix ms; 0 = none), varint deleted (Unix ms; 0 = not a tombstone)
//
// A meta is never the zero life (generation 0, no TTL, not deleted):
// entries imply that one, and recovery refuses it.
//
// Snapshot:
//
//	offset  size  field
//	0       8     magic "DCSNAP\x00\x02" (the last byte is the format version)
//	8       8     LSN covered
//	16      8     entry count
//	24      ...   entries
//	...     ...   optional meta section: 0x03, uvarint meta count (≥ 1), metas
//	...     ...   optional idempotency section: 0x02, uvarint key count,
//	              idempotency keys
//	end-4   4     CRC-32C of every byte before it
//
// Idempotency key (in records and snapshots):
//
//	uvarint key length (1..255), key bytes, u64 request fingerprint,
//	varint value answered, varint At (under 0x02 the remembered time in
//	milliseconds, under 0x01 a Unix-millisecond expiry)
//
// The optional sections follow the entries in the order shown, each at
// most once, and nothing follows the last one. Anything else — another
// tag, a section twice or out of order, a count larger than the bytes
// after it could hold, a key that is not valid, bytes left over — is
// corruption (or a torn tail, see Recovery). Entries of a key that does
// not decode to valid UTF-8 are read and ignored, as version 1 did.
//
// Version 1 (magics "DCWAL\x00\x00\x01" and "DCSNAP\x00\x01") differs in
// three ways: an entry has no generation (uvarint key length, key, u64
// replica, uvarint P, uvarint N; it reads as generation 0); there is no
// meta section; and the idempotency section may carry the tag 0x01 instead
// of 0x02 (below). Version 2 refuses the tag 0x01.
//
// Snapshots are written to a temporary file, synced, renamed into place and
// the directory synced, so a snapshot file is either whole or absent.
//
// # Upgrade, and no downgrade
//
// A data dir written by version 1 opens as it is: its snapshot and
// segments are read as version 1, and Open starts a new segment, in
// version 2, for what follows, so a data dir may hold version 1 segments
// followed by version 2 ones. Nothing is rewritten in place; the version 1
// files go as usual, once a snapshot (written in version 2) covers them.
//
// There is no downgrade. A build that reads only version 1 refuses a
// version 2 segment or snapshot: it finds an unknown magic and reports
// "segment ...: bad header" or "snapshot ...: not a snapshot (bad header)"
// as corruption and refuses to start; its --discard-corrupt would throw
// the version 2 data away. This build and later ones name the problem: a
// file whose version byte is above what they read fails Open with
// ErrNewerFormat ("written by a newer version: format version N ..."),
// and that is never skipped, even under DiscardCorrupt. The only way back
// is a copy of the data dir taken before the upgrade, which lacks what was
// written since.
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
// Older builds wrote the section with the tag 0x01 and a wall-clock
// expiry (Unix milliseconds) in place of At, in version 1 files. Such keys
// are still read, with Idem.Legacy set; the caller decides what they mean
// (package node keeps them a full window from recovery). The testdata
// directory holds golden files of version 1 with and without the section,
// and with the tag 0x01 (read only), and of version 2 (written and read).
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
// Zeros after a segment's last record are its unused, preallocated end
// (see Files): a zero record length is never valid, so they cannot be a
// record. In the last segment they are cut, as a clean close would have.
// Zeros followed by a record that continues the log are not an end but
// damage, judged as below.
//
// A record that is cut short, or fails its length, checksum, LSN or decoding
// test, is a torn tail when it is in the last segment and either no record
// that continues the log follows it, or the bytes from it on show a sector
// that a crash lost: zeros (from the bad record, or from a sector's start
// after it) up to a 512-byte boundary, followed by a sector that is not all
// zeros. A batch overwrites preallocated zeros, and the disk may keep a
// later sector of it and lose an earlier one; the records after the hole
// are then the rest of that batch, which was never acknowledged, since the
// next batch is written only once this one is durable. Damage to
// acknowledged records looks like this only if it zeroes them up to a
// sector boundary; it is then cut, with a warning, rather than refused. A
// torn tail is cut off, the cut synced before a new segment follows it,
// and the log says how many bytes went (up to the last byte that is not
// zero: the zeros after it are preallocated space).
//
// A record at offset c after a bad record at offset b continues the log
// when it is whole (length, checksum, and, as its segment's version says,
// entries, metas and idempotency key decode) and its LSN is between e and
// e + (c-b)/17, where e is the LSN the bad record should have carried and
// 17 is the smallest size a record can have (header, LSN, a one-byte
// count): the LSNs the damaged bytes could have held, and no more. Every
// record the log writes is at least that big (version 1: 29 bytes, one
// entry; version 2: 25 bytes, one meta alone, or 30, one entry), so the
// bound holds for both versions. Every record the log
// wrote after a damaged one passes this test, so a bad record followed by
// records the log wrote is never mistaken for a torn tail, even when a torn
// record ends the segment. A frame that a client placed inside a key fails
// it unless it carries one of those few LSNs; if it does, recovery refuses
// to start rather than cut, never the reverse.
//
// Anything else — a bad record followed by one that continues the log
// (without a lost sector between them), a
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
// The format above is encoded and decoded in format.go (versions, records,
// entries, metas, idempotency keys, segment names) and snapshot.go
// (snapshot files), which know nothing of the writer. The writer — the group-commit
// goroutine, the fsync policy and segment rotation — is in writer.go;
// recovery is in recover.go; wal.go holds the API (Open, Log, Options).
package wal
