package node

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math"
	"path/filepath"

	"github.com/dcounter/dcounter/internal/crdt"
	"github.com/dcounter/dcounter/internal/datadir"
	"github.com/dcounter/dcounter/internal/wal"
)

// openStorage locks the data dir, recovers the keyspace from the log and
// settles the replica ID. It decides on a new ID (invariant 4) when the
// history of the old one may be incomplete: corrupt log data was discarded,
// or the previous run ended uncleanly under a policy that acknowledges
// writes before they are fsynced.
func (n *Node) openStorage() error {
	cfg := n.cfg
	dd, err := datadir.Open(cfg.DataDir, cfg.Cluster)
	if err != nil {
		return err
	}
	log, rec, err := wal.OpenInto(wal.Options{
		Dir: filepath.Join(cfg.DataDir, "wal"), Sync: cfg.Fsync, SyncEvery: cfg.FsyncInterval,
		SegmentSize: cfg.SegmentSize, DiscardCorrupt: cfg.DiscardCorrupt, OnSync: n.metrics.observeSync,
		OnIdem: func(i wal.Idem) {
			if i.Expires > n.clk.Now().UnixMilli() {
				n.rememberIdem(i)
			}
		},
		Logger: n.log.With("component", "wal"), Clock: n.clk,
	}, n.ks)
	if err != nil {
		dd.Close()
		return err
	}
	reason := ""
	switch {
	case dd.Created:
		n.log.Info("new data dir: new replica", "replica", dd.ReplicaID, "dir", cfg.DataDir)
	case len(rec.Discarded) > 0:
		reason = "corrupt log data was discarded"
	case !dd.Previous.Clean && dd.Previous.Fsync != wal.SyncAlways.String():
		reason = "the previous run stopped uncleanly with --fsync " + dd.Previous.Fsync
	case rec.Segments == 0 && rec.SnapshotLSN == 0:
		reason = "the data dir has an identity but no log: its history is gone"
	case cfg.NewReplica:
		reason = "--new-replica was given"
	}
	if reason != "" {
		old := dd.ReplicaID
		if err := dd.NewReplicaID(); err != nil {
			log.Close()
			dd.Close()
			return err
		}
		n.log.Warn("taking a new replica ID: "+reason+"; the old replica's counts stay in the cluster",
			"old_replica", old, "replica", dd.ReplicaID)
	}
	// Incarnations must grow from run to run, or peers would keep an
	// older entry of ours (and could take it for another process with our
	// ID). They come from a durable counter, never from the clock: a clock
	// that is days off, or corrected, must not make us look stale to peers
	// or make our entries unrefutable. Data dirs written when incarnations
	// were start times in milliseconds just go on counting from there.
	n.incarnation = nextIncarnation(dd.Previous.Incarnation)
	if reason != "" || dd.Created {
		n.incarnation = 1 // a new replica has no history to outgrow
	}
	// From here until a clean shutdown, the dir says "not clean"; the
	// incarnation is durable before anyone hears of it.
	if err := dd.SetState(datadir.State{Clean: false, Fsync: cfg.Fsync.String(), Incarnation: n.incarnation}); err != nil {
		log.Close()
		dd.Close()
		return err
	}
	n.id, n.dir, n.wal, n.recovery = dd.ReplicaID, dd, log, rec
	if rec.Records == 0 {
		n.lastSnapshot = rec.SnapshotLSN // nothing to add to the snapshot we loaded
	}
	return nil
}

// nextIncarnation is the incarnation after last (it saturates; 2^64 starts
// are not a concern).
func nextIncarnation(last uint64) uint64 {
	if last == math.MaxUint64 {
		return last
	}
	return last + 1
}

// keepIncarnation makes this node's incarnation durable when it rose while
// running (refuting a rumour about us), so that the next start still takes
// a higher one than any peer has seen. Without a data dir there is nothing
// to keep: every start is a new replica.
func (n *Node) keepIncarnation() {
	if n.dir == nil {
		return
	}
	n.mu.Lock()
	inc := n.members.Self().Incarnation
	n.mu.Unlock()
	n.incMu.Lock()
	defer n.incMu.Unlock()
	if inc <= n.incarnation {
		return
	}
	if err := n.dir.SetState(datadir.State{Clean: false, Fsync: n.cfg.Fsync.String(), Incarnation: inc}); err != nil {
		n.log.Error("cannot record the raised incarnation; the next start may have to refute its old entries", "incarnation", inc, "err", err)
		return
	}
	n.incarnation = inc
}

// snapshot writes a snapshot covering every record logged so far. The LSN
// and the state are captured under mu, which every write path holds while
// it changes the state it will log: merged entries are in the keyspace,
// and reserved local ones in pending.
func (n *Node) snapshot() error {
	if err := n.wal.Err(); err != nil {
		// Nothing more is persisted after a log failure: a snapshot would
		// hold reservations of writes answered "outcome unknown".
		return fmt.Errorf("node: no snapshot after a log failure: %w", err)
	}
	n.mu.Lock()
	lsn := n.wal.LastLSN()
	entries := make([]crdt.Entry, 0, n.ks.Entries()+len(n.pending))
	n.ks.ForEach(func(e crdt.Entry) bool {
		entries = append(entries, e)
		return true
	})
	for key, pn := range n.pending {
		entries = append(entries, crdt.Entry{Key: key, Replica: n.id, P: pn.P, N: pn.N})
	}
	// The keys of keyed writes in flight go with their reservations.
	idems := n.snapshotIdems()
	n.mu.Unlock()
	if lsn == n.lastSnapshot {
		return nil
	}
	start := n.clk.Now()
	if err := n.wal.WriteSnapshot(lsn, entries, idems...); err != nil {
		return fmt.Errorf("node: snapshot: %w", err)
	}
	n.lastSnapshot = lsn
	n.log.Debug("snapshot written", "lsn", lsn, "entries", len(entries), "took", n.clk.Now().Sub(start))
	return nil
}

// snapshotLoop writes a snapshot when a log segment fills up, every
// SnapshotInterval if anything was logged, and soon after a start that
// replayed records (so the next recovery is quick).
func (n *Node) snapshotLoop() {
	defer n.wg.Done()
	t := n.clk.NewTicker(n.cfg.SnapshotInterval)
	defer t.Stop()
	if n.recovery.Records > 0 {
		n.trySnapshot()
	}
	for {
		select {
		case <-n.stop:
			return
		case <-n.wal.SnapshotDue():
			n.trySnapshot()
		case <-t.C():
			n.trySnapshot()
		}
	}
}

func (n *Node) trySnapshot() {
	if err := n.snapshot(); err != nil {
		n.log.Error("snapshot failed; will retry", "err", err)
	}
}

// closeStorage writes a final snapshot, closes the log and, if all went
// well, records a clean shutdown.
func (n *Node) closeStorage() error {
	var serr error
	if n.wal.Err() == nil { // see snapshot
		serr = n.snapshot()
	}
	werr := n.wal.Close()
	var err error
	switch {
	case werr != nil:
		err = werr
	case serr != nil:
		err = serr
	default:
		n.incMu.Lock()
		err = n.dir.SetState(datadir.State{Clean: true, Fsync: n.cfg.Fsync.String(), Incarnation: n.incarnation})
		n.incMu.Unlock()
	}
	n.dir.Close()
	return err
}

// randomReplicaID is the identity of a node without a data dir.
func randomReplicaID() crdt.ReplicaID {
	var b [8]byte
	for {
		rand.Read(b[:])
		if id := binary.BigEndian.Uint64(b[:]); id != 0 {
			return crdt.ReplicaID(id)
		}
	}
}
