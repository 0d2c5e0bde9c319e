package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestMain lets the test binary stand in for dcounter: the completion
// scripts call the binary back (dcounter __complete ...).
func TestMain(m *testing.M) {
	if os.Getenv("DCOUNTER_TEST_BINARY_IS_MAIN") == "1" {
		main()
	}
	os.Exit(m.Run())
}

// fakeDcounter returns a directory holding a "dcounter" that runs this test
// binary as the command.
func fakeDcounter(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	script := "#!/bin/sh\nDCOUNTER_TEST_BINARY_IS_MAIN=1 exec " + shellQuote(self) + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(dir, "dcounter"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// complete returns the candidates "dcounter __complete args..." offers.
func complete(t *testing.T, args ...string) []string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), append([]string{"__complete"}, args...), &stdout, &stderr); code != 0 {
		t.Fatalf("__complete %q = %d: %s", args, code, stderr.String())
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		if l != "" && !strings.HasPrefix(l, ":") {
			name, _, _ := strings.Cut(l, "\t")
			out = append(out, name)
		}
	}
	return out
}

func TestCompleteCommandsFlagsAndValues(t *testing.T) {
	clearDcounterEnv(t)
	all := complete(t, "")
	for _, c := range commands() {
		for _, name := range append([]string{c.Name()}, c.Aliases...) {
			if !slices.Contains(all, name) {
				t.Errorf("no completion for command %q in %q", name, all)
			}
		}
	}
	if slices.Contains(all, "__complete") {
		t.Errorf("the hidden __complete command is offered: %q", all)
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"mem"}, []string{"members"}},
		{[]string{"no"}, []string{"node", "nodes"}},
		{[]string{"inc", "--ttl"}, []string{"--ttl", "--ttl-always"}},
		{[]string{"get", "--ttl"}, nil},
		{[]string{"node", "--cluster-key"}, []string{"--cluster-key", "--cluster-key-file"}},
		{[]string{"node", "--fsync", ""}, []string{"always", "interval", "none"}},
		{[]string{"gateway", "--log-format", ""}, []string{"text", "json"}},
		{[]string{"completion", ""}, []string{"bash", "zsh", "fish", "powershell"}},
		{[]string{"secrets", ""}, []string{"init", "token"}},
	} {
		if got := complete(t, tc.args...); !slices.Equal(got, tc.want) {
			t.Errorf("complete %q = %q, want %q", tc.args, got, tc.want)
		}
	}
}

func TestCompletionScripts(t *testing.T) {
	clearDcounterEnv(t)
	for _, sh := range shells {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), []string{"completion", sh}, &stdout, &stderr); code != 0 || stderr.Len() != 0 {
			t.Fatalf("completion %s = %d, stderr %q", sh, code, stderr.String())
		}
		if !strings.Contains(stdout.String(), "__complete") {
			t.Errorf("completion %s: the script does not ask the binary:\n%s", sh, stdout.String())
		}
		if sh == "bash" || sh == "zsh" {
			shell, err := exec.LookPath(sh)
			if err != nil {
				t.Logf("%s not installed: syntax not checked", sh)
				continue
			}
			cmd := exec.Command(shell, "-n")
			cmd.Stdin = bytes.NewReader(stdout.Bytes())
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s -n on the completion script: %v: %s", sh, err, b)
			}
		}
	}
}

// TestBashCompletes loads the bash script as a user's shell would and asks
// it to complete, as pressing Tab does.
func TestBashCompletes(t *testing.T) {
	clearDcounterEnv(t)
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash not installed")
	}
	const lib = "/usr/share/bash-completion/bash_completion" // the bash-completion package the script needs
	if _, err := os.Stat(lib); err != nil {
		t.Skip("bash-completion not installed")
	}
	var script bytes.Buffer
	if code := run(context.Background(), []string{"completion", "bash"}, &script, &script); code != 0 {
		t.Fatalf("completion bash = %d", code)
	}
	path := filepath.Join(t.TempDir(), "dcounter.bash")
	if err := os.WriteFile(path, script.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		line string
		want []string
	}{
		{"dcounter mem", []string{"members"}},
		{"dcounter ke", []string{"keygen", "keys"}},
		{"dcounter inc --ttl-", []string{"--ttl-always"}},
		{"dcounter completion f", []string{"fish"}},
	} {
		prog := `source ` + shellQuote(lib) + `; source ` + shellQuote(path) + `
complete -p dcounter >/dev/null || exit 3
read -ra COMP_WORDS <<<"$LINE"
[[ $LINE == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMP_LINE=$LINE; COMP_POINT=${#LINE}
__start_dcounter 2>/dev/null
printf '%s\n' "${COMPREPLY[@]}" | sort`
		cmd := exec.Command(bash, "--norc", "--noprofile", "-c", prog)
		cmd.Env = append(os.Environ(), "PATH="+fakeDcounter(t)+string(os.PathListSeparator)+os.Getenv("PATH"), "LINE="+tc.line)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("bash completing %q: %v", tc.line, err)
		}
		if got := strings.Fields(string(out)); !slices.Equal(got, tc.want) {
			t.Errorf("bash completes %q to %q, want %q", tc.line, got, tc.want)
		}
	}
}
