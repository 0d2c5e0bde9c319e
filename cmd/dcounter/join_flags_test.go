package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestNodeRefusesBadJoinSpecs(t *testing.T) {
	clearDcounterEnv(t)
	var stdout, stderr bytes.Buffer
	args := []string{"node", "--in-memory", "--join", "10.0.0.1:7946,dns+svc,dnssrv+_g._tcp.svc:7946,dns+ok.svc:7946"}
	if code := run(context.Background(), args, &stdout, &stderr); code != exitUsage {
		t.Fatalf("run(%q) = %d, want %d; stderr: %s", args, code, exitUsage, stderr.String())
	}
	for _, w := range []string{`"dns+svc"`, `"dnssrv+_g._tcp.svc:7946"`} {
		if !strings.Contains(stderr.String(), w) {
			t.Errorf("stderr does not name %s:\n%s", w, stderr.String())
		}
	}
	if strings.Contains(stderr.String(), "ok.svc") || strings.Contains(stderr.String(), "10.0.0.1") {
		t.Errorf("stderr names a good spec:\n%s", stderr.String())
	}
}
