package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// Discovery and gateway refuse to serve without a key off loopback, and
// say how to fix it; a malformed key is a usage error. Every case must
// fail before anything starts.
func TestDiscoveryAndGatewayRefuseOpenNonLoopback(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want []string
	}{
		{"discovery on all interfaces", nil, []string{"discovery", "--http-addr", "0.0.0.0:8500"}, []string{"--cluster-key", "--insecure"}},
		{"discovery on a LAN address", nil, []string{"discovery", "--http-addr", "10.1.2.3:8500"}, []string{"--cluster-key", "--insecure"}},
		{"discovery bad key", nil, []string{"discovery", "--cluster-key", "not base64!"}, []string{"--cluster-key"}},
		{"discovery bad key from env", map[string]string{"DCOUNTER_CLUSTER_KEY": "AAAA"}, []string{"discovery"}, []string{"--cluster-key"}},
		{"gateway on all interfaces", nil, []string{"gateway", "--nodes", "127.0.0.1:1", "--http-addr", ":8000"}, []string{"--cluster-key", "--insecure"}},
		{"gateway bad key", nil, []string{"gateway", "--nodes", "127.0.0.1:1", "--cluster-key", "xyz"}, []string{"--cluster-key"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearDcounterEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), tc.args, &stdout, &stderr); code != exitUsage {
				t.Fatalf("run(%q) = %d, want %d; stderr: %s", tc.args, code, exitUsage, stderr.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr does not mention %q:\n%s", w, stderr.String())
				}
			}
		})
	}
}

func TestDiscoveryAndGatewayHelpListTrustFlags(t *testing.T) {
	for cmd, flags := range map[string][]string{
		"discovery": {"cluster-key", "insecure", "max-entries", "max-per-source"},
		"gateway":   {"cluster-key", "cluster", "insecure", "max-nodes"},
	} {
		clearDcounterEnv(t)
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), []string{cmd, "--help"}, &stdout, &stderr); code != 0 {
			t.Fatalf("%s --help = %d", cmd, code)
		}
		for _, f := range flags {
			if !strings.Contains(stdout.String(), "  --"+f+" ") {
				t.Errorf("%s --help does not list --%s", cmd, f)
			}
		}
	}
}
