package node

import (
	"cmp"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math"
	"path/filepath"
	"slices"

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
	var recovered []wal.Idem
	dd, err := datadir.Open(cfg.DataDir, cfg.Cluster)
	if err != nil {
		return err
	}
	log, rec, err := wal.Open(wal.Options{
		Dir: filepath.Join(cfg.DataDir, "wal"), Sync: cfg.Fsync, SyncEvery: cfg.FsyncInterval,
		SegmentSize: cfg.SegmentSize, DiscardCorrupt: cfg.DiscardCorrupt, OnSync: n.metrics.observeSync,
		OnIdem: func(i wal.Idem) { recovered = append(recovered, i) },
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
	n.recoverIdems(recovered, dd.Previous.Remembered)
	// From here until a clean shutdown, the dir says "not clean"; the
	// incarnation is durable before anyone hears of it.
	if err := dd.SetState(datadir.State{Clean: false, Fsync: cfg.Fsync.String(), Incarnation: n.incarnation, Remembered: n.rBase}); err != nil {
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

// recoverIdems sets the remembered time from what recovery found (the
// largest of the state file's and the keys' times) and remembers the keys
// still within their window. Keys from older versions carry a wall-clock
// expiry, which proves nothing: they are kept a full window from now.
func (n *Node) recoverIdems(keys []wal.Idem, stateRemembered int64) {
	n.rBase, n.rStart = max(0, stateRemembered), n.clk.Now()
	legacy := 0
	for _, k := range keys {
		if k.Legacy {
			legacy++
		} else {
			n.rBase = max(n.rBase, k.At)
		}
	}
	for i := range keys {
		if keys[i].Legacy {
			keys[i].At, keys[i].Legacy = n.rBase, false
		}
	}
	// Slots must be in remembered-time order for expireIdem.
	slices.SortStableFunc(keys, func(a, b wal.Idem) int { return cmp.Compare(a.At, b.At) })
	for _, k := range keys {
		if n.idemLive(k.At, n.rBase) {
			n.rememberIdem(k)
		}
	}
	if legacy > 0 {
		n.log.Info("idempotency keys written by an older version kept for a full window from now", "keys", legacy, "window", n.cfg.IdempotencyWindow)
	}
}

// saveState records the data dir's running state: not clean, the
// incarnation inc (if higher than the last recorded) and the remembered
// time now, so that a crash loses little of it.
func (n *Node) saveState(inc uint64) error {
	if n.dir == nil {
		return nil
	}
	n.incMu.Lock()
	defer n.incMu.Unlock()
	inc = max(inc, n.incarnation)
	if err := n.dir.SetState(datadir.State{Clean: false, Fsync: n.cfg.Fsync.String(), Incarnation: inc, Remembered: n.remembered(n.clk.Now())}); err != nil {
		return err
	}
	n.incarnation = inc
	return nil
}

// keepIncarnation makes this node's incarnation inc durable when it rose
// while running (refuting a rumour about us), so that the next start still
// takes a higher one than any peer has seen. Without a data dir there is
// nothing to keep: every start is a new replica.
func (n *Node) keepIncarnation(inc uint64) {
	if n.dir == nil {
		return
	}
	n.incMu.Lock()
	kept := n.incarnation
	n.incMu.Unlock()
	if inc <= kept {
		return
	}
	if err := n.saveState(inc); err != nil {
		n.log.Error("cannot record the raised incarnation; the next start may have to refute its old entries", "incarnation", inc, "err", err)
	}
}

// snapshot writes a snapshot covering every record logged so far. The LSN
// and the state are captured under mu, which every write path holds while
// it changes the state it will log: merged entries are in the keyspace,
// reserved local ones in pending, and the metas of records not yet
// durable in pendingMetas.
func (n *Node) snapshot() error {
	if err := n.wal.Err(); err != nil {
		// Nothing more is persisted after a log failure: a snapshot would
		// hold reservations of writes answered "outcome unknown".
		return fmt.Errorf("node: no snapshot after a log failure: %w", err)
	}
	n.mu.Lock()
	lsn := n.wal.LastLSN()
	var state crdt.Contents
	state.Entries = make([]crdt.Entry, 0, n.ks.Entries()+len(n.pending))
	n.ks.ForEach(func(e crdt.Entry) bool {
		state.Entries = append(state.Entries, e)
		return true
	})
	n.ks.ForEachMeta(func(m crdt.Meta) bool {
		state.Metas = append(state.Metas, m)
		return true
	})
	for key, pn := range n.pending {
		state.Entries = append(state.Entries, crdt.Entry{Key: key, Replica: n.id, Gen: pn.gen, P: pn.P, N: pn.N})
	}
	for _, ms := range n.pendingMetas {
		state.Metas = append(state.Metas, ms...)
	}
	// The keys of keyed writes in flight go with their reservations.
	idems := n.snapshotIdems()
	reclaimed := n.reclaimedSinceSnapshot
	n.reclaimedSinceSnapshot = false
	n.mu.Unlock()
	if lsn == n.lastSnapshot && !reclaimed {
		return nil
	}
	start := n.clk.Now()
	if err := n.wal.WriteSnapshot(lsn, state, idems...); err != nil {
		if reclaimed {
			n.mu.Lock()
			n.reclaimedSinceSnapshot = true
			n.mu.Unlock()
		}
		return fmt.Errorf("node: snapshot: %w", err)
	}
	n.lastSnapshot = lsn
	n.log.Debug("snapshot written", "lsn", lsn, "entries", len(state.Entries), "metas", len(state.Metas), "took", n.clk.Now().Sub(start))
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
			// Keep the remembered time's progress, so a crash costs
			// idempotency keys at most one interval of extra memory.
			if err := n.saveState(0); err != nil {
				n.log.Error("cannot record the data dir state; will retry", "err", err)
			}
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
		err = n.dir.SetState(datadir.State{Clean: true, Fsync: n.cfg.Fsync.String(), Incarnation: n.incarnation, Remembered: n.remembered(n.clk.Now())})
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
