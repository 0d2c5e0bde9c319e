package crdt_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/dcounter/dcounter/internal/crdt"
)

// TestReplicaIDIsHexInLogsAndJSON: an ID above 2^53, which a JSON number
// would lose, shows as its 16 hex digits in a JSON log, in a text log and
// in JSON, and reads back.
func TestReplicaIDIsHexInLogsAndJSON(t *testing.T) {
	id := crdt.ReplicaID(0xfedcba9876543210)
	const hex = "fedcba9876543210"

	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "replica", id, "group", slog.GroupValue(slog.Any("id", id)))
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["replica"] != hex || rec["group"].(map[string]any)["id"] != hex {
		t.Errorf("JSON log %s, want the replica as %q", buf.Bytes(), hex)
	}

	buf.Reset()
	slog.New(slog.NewTextHandler(&buf, nil)).With("replica", id).Info("x")
	if !strings.Contains(buf.String(), "replica="+hex) {
		t.Errorf("text log %s, want replica=%s", buf.String(), hex)
	}

	b, err := json.Marshal(map[crdt.ReplicaID]crdt.ReplicaID{id: id})
	if err != nil || string(b) != `{"`+hex+`":"`+hex+`"}` {
		t.Fatalf("JSON %s (%v)", b, err)
	}
	var back map[crdt.ReplicaID]crdt.ReplicaID
	if err := json.Unmarshal(b, &back); err != nil || back[id] != id {
		t.Errorf("read back %v (%v)", back, err)
	}
	if err := json.Unmarshal([]byte(`"12"`), new(crdt.ReplicaID)); err == nil {
		t.Error("a short ID was accepted")
	}
}
