package schedtune

import (
	"os"
	"syscall"
)

// Exec re-executes the running binary, with the same arguments, when Env
// would change its environment, and does not return if that succeeds. It
// returns nil when there is nothing to change, and the exec's error
// otherwise (the process then runs on without the setting).
func Exec() error {
	env, changed := Env(os.Environ())
	if !changed {
		return nil
	}
	return syscall.Exec("/proc/self/exe", os.Args, env)
}
