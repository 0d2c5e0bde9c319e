//go:build !linux

package schedtune

// Exec does nothing outside Linux: the runtime's monitor behaves the same
// there, but re-executing the binary is only done where /proc/self/exe
// names it exactly.
func Exec() error { return nil }
