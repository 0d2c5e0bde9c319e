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
	return syscall.Exec("/proc/self/exe", os.Args, env)
}
