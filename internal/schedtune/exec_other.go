//go:build !linux

package schedtune

// Exec does nothing outside Linux, where the effect of Setting has not
// been measured.
func Exec() error { return nil }
