package schedtune

import (
	"bytes"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestEnv(t *testing.T) {
	for _, c := range []struct {
		name    string
		env     []string
		want    []string
		changed bool
	}{
		{"no GODEBUG", []string{"A=1"}, []string{"A=1", "GODEBUG=" + Setting}, true},
		{"empty GODEBUG", []string{"GODEBUG=", "A=1"}, []string{"GODEBUG=" + Setting, "A=1"}, true},
		{"other settings kept", []string{"GODEBUG=gctrace=1"}, []string{"GODEBUG=gctrace=1," + Setting}, true},
		{"operator turned it off", []string{"GODEBUG=schedtrace=0"}, []string{"GODEBUG=schedtrace=0"}, false},
		{"operator's own interval", []string{"GODEBUG=gctrace=1,schedtrace=1000"}, []string{"GODEBUG=gctrace=1,schedtrace=1000"}, false},
		{"a key the runtime does not know", []string{"GODEBUG=gctrace=1, schedtrace=0"}, []string{"GODEBUG=gctrace=1, schedtrace=0," + Setting}, true},
		{"the first GODEBUG counts", []string{"GODEBUG=gctrace=1", "GODEBUG=schedtrace=0"}, []string{"GODEBUG=gctrace=1," + Setting, "GODEBUG=schedtrace=0"}, true},
		{"a setting merely named alike", []string{"GODEBUG=xschedtrace=1"}, []string{"GODEBUG=xschedtrace=1," + Setting}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := slices.Clone(c.env)
			got, changed := Env(in)
			if !slices.Equal(got, c.want) || changed != c.changed {
				t.Errorf("Env(%q) = %q, %v; want %q, %v", c.env, got, changed, c.want, c.changed)
			}
			if !slices.Equal(in, c.env) {
				t.Errorf("Env changed its argument to %q", in)
			}
		})
	}
}

// TestExecReexecutes runs this test binary as a child that calls Exec: the
// kernel's record of the process's environment (/proc/PID/environ, set by
// execve only) must then hold the setting, under the same process ID, or
// stay as it was for a GODEBUG that sets schedtrace or a process with one P.
func TestExecReexecutes(t *testing.T) {
	if os.Getenv("SCHEDTUNE_CHILD") == "1" {
		if err := Exec(); err != nil {
			t.Fatal(err)
		}
		environ, err := os.ReadFile("/proc/self/environ")
		if err != nil {
			t.Fatal(err)
		}
		os.Stdout.WriteString("pid=" + strconv.Itoa(os.Getpid()) + "\n")
		for _, kv := range bytes.Split(environ, []byte{0}) {
			if bytes.HasPrefix(kv, []byte("GODEBUG=")) {
				os.Stdout.Write(append(kv, '\n'))
			}
		}
		return
	}
	for _, c := range []struct {
		env  []string
		want string // the GODEBUG entry expected, "" for none
	}{
		{[]string{"GOMAXPROCS=2"}, "GODEBUG=" + Setting},
		{[]string{"GOMAXPROCS=2", "GODEBUG=gctrace=0"}, "GODEBUG=gctrace=0," + Setting},
		{[]string{"GOMAXPROCS=2", "GODEBUG=schedtrace=0"}, "GODEBUG=schedtrace=0"},
		{[]string{"GOMAXPROCS=1"}, ""},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestExecReexecutes$", "-test.v")
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "GODEBUG=") && !strings.HasPrefix(kv, "GOMAXPROCS=") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.Env = append(append(cmd.Env, "SCHEDTUNE_CHILD=1"), c.env...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("child with %q: %v\n%s", c.env, err, out.String())
		}
		if !strings.Contains(out.String(), "pid="+strconv.Itoa(cmd.Process.Pid)+"\n") {
			t.Errorf("child with %q did not report its own process ID %d:\n%s", c.env, cmd.Process.Pid, out.String())
		}
		switch {
		case c.want == "" && strings.Contains(out.String(), "\nGODEBUG="):
			t.Errorf("child started with %q was given a GODEBUG:\n%s", c.env, out.String())
		case c.want != "" && !strings.Contains(out.String(), "\n"+c.want+"\n"):
			t.Errorf("child started with %q: want %q in its environ:\n%s", c.env, c.want, out.String())
		}
	}
}
