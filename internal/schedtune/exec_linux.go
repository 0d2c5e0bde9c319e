package schedtune

import (
	"os"
	"runtime"
	"syscall"
)

// Exec re-executes the running binary, with the same arguments, when the
// process has at least MinProcs Ps and Env would change its environment, and
// does not return if that succeeds. It returns nil when there is nothing
// to do, and the exec's error otherwise (the process then runs on without
// the setting).
func Exec() error {
	if runtime.GOMAXPROCS(0) < MinProcs {
		return nil
	}
	env, changed := Env(os.Environ())
	if !changed {
		return nil
	}
	// The path, not /proc/self/exe: the kernel names the process after
	// the file executed, and ps, top and pgrep should show what they
	// showed before.
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	return syscall.Exec(exe, os.Args, env)
}
