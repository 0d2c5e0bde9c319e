package e2e

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestNodeMetrics(t *testing.T) {
	nodes := startCluster(t, 2)
	if err := nodes[0].add(context.Background(), "default", 3); err != nil {
		t.Fatal(err)
	}
	if err := nodes[0].add(context.Background(), "named", -1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() error { return expectValue(nodes[1], "default", 3) }, true)
	b, err := nodes[0].get("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for _, want := range []string{
		`dcounter_operations_total{key_type="default",op="inc",outcome="ok",protocol="http"} 1`,
		`dcounter_operations_total{key_type="named",op="dec",outcome="ok",protocol="http"} 1`,
		`dcounter_gossip_messages_total{direction="out",type="delta"}`,
		`dcounter_gossip_bytes_total{direction="in",type="join"}`,
		`dcounter_members{state="alive"} 2`,
		`dcounter_wal_fsync_duration_seconds_bucket`,
		`dcounter_wal_records_total`,
		`dcounter_transport_frames_sent_total`,
		`dcounter_transport_rejected_total{reason="wrong_cluster"} 0`,
		`dcounter_request_duration_seconds_count{op="inc",protocol="http"} 1`,
		`dcounter_request_duration_seconds_bucket{op="inc",protocol="http",le="+Inf"} 1`,
		`dcounter_build_info{goversion="go`,
		`dcounter_keys 2`,
		`go_goroutines`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	b, _ = nodes[1].get("/metrics")
	if !strings.Contains(string(b), `dcounter_merged_entries_total{via="delta"}`) {
		t.Error("the receiving node's /metrics lacks merged entries by delta")
	}
}
