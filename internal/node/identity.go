package node

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dcounter/dcounter/internal/crdt"
)

// metaFormat is the version of the data dir's meta file.
const metaFormat = 1

// meta is the data dir's identity file.
type meta struct {
	Format    int    `json:"format"`
	Cluster   string `json:"cluster"`
	ReplicaID string `json:"replica_id"`
}

// newReplicaID returns a random, non-zero replica ID.
func newReplicaID() crdt.ReplicaID {
	var b [8]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			panic(err) // crypto/rand never fails on supported platforms
		}
		if id := binary.BigEndian.Uint64(b[:]); id != 0 {
			return crdt.ReplicaID(id)
		}
	}
}

// loadIdentity reads dir/meta, creating dir and a fresh identity if there is
// none. A data dir that belongs to another cluster is refused.
func loadIdentity(dir, cluster string) (crdt.ReplicaID, bool, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return 0, false, fmt.Errorf("node: data dir: %w", err)
	}
	path := filepath.Join(dir, "meta")
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		id := newReplicaID()
		m := meta{Format: metaFormat, Cluster: cluster, ReplicaID: id.String()}
		if err := writeFileAtomic(path, m); err != nil {
			return 0, false, fmt.Errorf("node: data dir: %w", err)
		}
		return id, true, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("node: data dir: %w", err)
	}
	var m meta
	if err := json.Unmarshal(b, &m); err != nil {
		return 0, false, fmt.Errorf("node: %s is corrupt: %w", path, err)
	}
	if m.Format != metaFormat {
		return 0, false, fmt.Errorf("node: %s has format %d, this build reads %d", path, m.Format, metaFormat)
	}
	if m.Cluster != cluster {
		return 0, false, fmt.Errorf("node: data dir %s belongs to cluster %q, not %q", dir, m.Cluster, cluster)
	}
	id, err := crdt.ParseReplicaID(m.ReplicaID)
	if err != nil || id == 0 {
		return 0, false, fmt.Errorf("node: %s: bad replica ID %q", path, m.ReplicaID)
	}
	return id, false, nil
}

// renewIdentity gives dir a fresh replica ID.
func renewIdentity(dir, cluster string) (crdt.ReplicaID, error) {
	id := newReplicaID()
	m := meta{Format: metaFormat, Cluster: cluster, ReplicaID: id.String()}
	if err := writeFileAtomic(filepath.Join(dir, "meta"), m); err != nil {
		return 0, fmt.Errorf("node: data dir: %w", err)
	}
	return id, nil
}

// writeFileAtomic writes v as JSON to path via a synced temp file and rename,
// then syncs the directory, so a crash leaves either the old file or the new.
func writeFileAtomic(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
