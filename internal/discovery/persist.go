package discovery

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/dcounter/dcounter/internal/atomicfile"
)

// The data file is a JSON array of entries as GET /peers shows them:
//
//	[{"id":"…","name":"…","gossip_addr":"h:p","http_addr":"h:p","last_seen":"RFC 3339"}, …]
//
// It is written whole (write, fsync, rename, fsync the directory), so a
// crash leaves the old file or the new one, never a mix.

// loadFile reads the entries saved in file; a missing file is empty.
func loadFile(file string) ([]Entry, error) {
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	var es []Entry
	if err := json.Unmarshal(b, &es); err != nil {
		return nil, fmt.Errorf("discovery: %s is corrupt: %w (move it away to start empty)", file, err)
	}
	return es, nil
}

// saveFile replaces file with es.
func saveFile(file string, es []Entry) error {
	return atomicfile.WriteJSON(file, es)
}
