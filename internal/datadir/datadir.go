// Package datadir owns a node's data directory: its exclusive lock, its
// identity, and the record of how the previous run ended.
//
// Layout (the write-ahead log keeps its own files under wal/, see package wal):
//
//	LOCK    flock(2)-ed by the running process, which writes its PID into it
//	meta    JSON {"format":1,"cluster":"…","replica_id":"…"}: written once,
//	        and again only when the replica ID must change
//	state   JSON {"clean":bool,"fsync":"always|interval|none"}: "clean":false
//	        is written (and synced) before the node accepts writes, true after
//	        a clean shutdown, so the next start knows whether the log may have
//	        lost an acknowledged tail
//	wal/    write-ahead log segments and snapshots
//
// Every file is replaced atomically: temp file, fsync, rename, fsync dir.
package datadir

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"syscall"

	"github.com/dcounter/dcounter/internal/atomicfile"
	"github.com/dcounter/dcounter/internal/crdt"
)

// Format is the version of the meta file this build reads and writes.
const Format = 1

var (
	// ErrLocked is returned when another process holds the data dir.
	ErrLocked = errors.New("datadir: in use by another process")
	// ErrOtherCluster is returned for a data dir created for another cluster.
	ErrOtherCluster = errors.New("datadir: belongs to another cluster")
	// ErrCorrupt is returned for unreadable meta or state files.
	ErrCorrupt = errors.New("datadir: corrupt")
)

type meta struct {
	Format    int    `json:"format"`
	Cluster   string `json:"cluster"`
	ReplicaID string `json:"replica_id"`
}

// State is how the previous run left the data dir.
type State struct {
	// Clean is true when the previous run shut down cleanly.
	Clean bool `json:"clean"`
	// Fsync is the fsync policy the previous run wrote its log under.
	Fsync string `json:"fsync"`
	// Incarnation is the highest member incarnation the replica has used
	// (a counter, raised on every start and when refuting a rumour); the
	// next run takes a higher one. Older versions stored start times in
	// milliseconds here; counting on from them is just as correct.
	Incarnation uint64 `json:"incarnation,omitempty"`
	// Remembered is the replica's remembered time in milliseconds (the
	// clock idempotency windows are measured on; see package node) when
	// the state was written. Absent in older data dirs.
	Remembered int64 `json:"remembered,omitempty"`
}

// Dir is an open, locked data directory.
type Dir struct {
	Path string
	// ReplicaID is this data dir's replica identity.
	ReplicaID crdt.ReplicaID
	// Created is true when Open created the identity (a new or wiped dir).
	Created bool
	// Previous is the state the previous run left; zero if Created.
	Previous State

	cluster string
	lock    *os.File
}

// Open creates dir if needed, locks it, and reads (or creates) its identity.
// A dir locked by another live process, or created for another cluster, is
// refused with an error that says which.
func Open(path, cluster string) (*Dir, error) {
	if err := os.MkdirAll(path, 0o750); err != nil {
		return nil, fmt.Errorf("datadir: %w", err)
	}
	d := &Dir{Path: path, cluster: cluster}
	if err := d.acquire(); err != nil {
		return nil, err
	}
	if err := d.load(); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

func (d *Dir) acquire() error {
	f, err := os.OpenFile(filepath.Join(d.Path, "LOCK"), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("datadir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(f.Name())
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			who := strings.TrimSpace(string(holder))
			if who != "" {
				who = " (pid " + who + ")"
			}
			return fmt.Errorf("%w: %s is locked by another dcounter process%s; stop it or use another --data-dir", ErrLocked, d.Path, who)
		}
		return fmt.Errorf("datadir: lock %s: %w", d.Path, err)
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	d.lock = f
	return nil
}

func (d *Dir) load() error {
	metaPath := filepath.Join(d.Path, "meta")
	b, err := os.ReadFile(metaPath)
	if errors.Is(err, os.ErrNotExist) {
		d.Created = true
		return d.NewReplicaID()
	}
	if err != nil {
		return fmt.Errorf("datadir: %w", err)
	}
	var m meta
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, metaPath, err)
	}
	if m.Format != Format {
		return fmt.Errorf("%w: %s has format %d, this build reads %d", ErrCorrupt, metaPath, m.Format, Format)
	}
	if m.Cluster != d.cluster {
		return fmt.Errorf("%w: %s was created for cluster %q, not %q", ErrOtherCluster, d.Path, m.Cluster, d.cluster)
	}
	if d.ReplicaID, err = crdt.ParseReplicaID(m.ReplicaID); err != nil || d.ReplicaID == 0 {
		return fmt.Errorf("%w: %s: bad replica ID %q", ErrCorrupt, metaPath, m.ReplicaID)
	}
	b, err = os.ReadFile(filepath.Join(d.Path, "state"))
	switch {
	case errors.Is(err, os.ErrNotExist):
		// A dir whose first run died before writing state: nothing acknowledged.
		d.Previous = State{Clean: false, Fsync: "always"}
	case err != nil:
		return fmt.Errorf("datadir: %w", err)
	default:
		if err := json.Unmarshal(b, &d.Previous); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrCorrupt, filepath.Join(d.Path, "state"), err)
		}
	}
	return nil
}

// NewReplicaID gives the dir a fresh random replica ID, durably.
func (d *Dir) NewReplicaID() error {
	old := d.ReplicaID
	for d.ReplicaID == 0 || d.ReplicaID == old {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return fmt.Errorf("datadir: %w", err)
		}
		d.ReplicaID = crdt.ReplicaID(binary.BigEndian.Uint64(b[:]))
	}
	return atomicfile.WriteJSON(filepath.Join(d.Path, "meta"), meta{Format: Format, Cluster: d.cluster, ReplicaID: d.ReplicaID.String()})
}

// SetState durably records how this run is (or was) running.
func (d *Dir) SetState(s State) error {
	return atomicfile.WriteJSON(filepath.Join(d.Path, "state"), s)
}

// Close releases the lock. It is idempotent.
func (d *Dir) Close() error {
	if d.lock == nil {
		return nil
	}
	err := d.lock.Close() // closing the descriptor releases the flock
	d.lock = nil
	return err
}
