package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSecretsInitKeepsExisting(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"secrets", "init", dir}, &out, &errb); code != 0 {
		t.Fatalf("init = %d: %s", code, errb.String())
	}
	if strings.Count(out.String(), "created") != 2 {
		t.Fatalf("init output %q", out.String())
	}
	key1, _ := os.ReadFile(filepath.Join(dir, secretsKeyFile))
	for _, name := range []string{secretsKeyFile, secretsAuthFile} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v, want mode 0600", name, st.Mode(), err)
		}
	}
	r, err := readKeyFile(filepath.Join(dir, secretsKeyFile))
	if err != nil || r.Len() != 1 {
		t.Fatalf("key file: %v (%d keys)", err, r.Len())
	}

	out.Reset()
	if code := run(context.Background(), []string{"secrets", "init", dir}, &out, &errb); code != 0 || out.Len() != 0 {
		t.Fatalf("second init = %d, output %q: want no change", code, out.String())
	}
	if key2, _ := os.ReadFile(filepath.Join(dir, secretsKeyFile)); !bytes.Equal(key1, key2) {
		t.Fatal("second init replaced the key")
	}

	tokens := map[string]bool{}
	for _, role := range []string{"admin", "write", "read"} {
		out.Reset()
		if code := run(context.Background(), []string{"secrets", "token", dir, role}, &out, &errb); code != 0 {
			t.Fatalf("token %s = %d: %s", role, code, errb.String())
		}
		tok := strings.TrimSpace(out.String())
		if len(tok) < 40 || tokens[tok] {
			t.Fatalf("token %s = %q: short or repeated", role, tok)
		}
		tokens[tok] = true
	}
	if code := run(context.Background(), []string{"secrets", "token", dir, "root"}, &out, &errb); code != 1 {
		t.Fatalf("unknown role: exit %d, want 1", code)
	}
	if code := run(context.Background(), []string{"secrets", "bogus"}, &out, &errb); code != exitUsage {
		t.Fatalf("bad usage: exit %d, want %d", code, exitUsage)
	}
}

func TestReadKeyFileRing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k")
	a, b := "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
	os.WriteFile(path, []byte(a+"\n"+b+"\n"), 0o600)
	r, err := readKeyFile(path)
	if err != nil || r.Len() != 2 {
		t.Fatalf("ring: %v, %d keys", err, r.Len())
	}
	os.WriteFile(path, []byte("\n"), 0o600)
	if _, err := readKeyFile(path); err == nil {
		t.Fatal("an empty key file was accepted")
	}
}
