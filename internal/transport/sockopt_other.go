//go:build !linux

package transport

import (
	"syscall"
	"time"
)

// tcpUserTimeout is a no-op where TCP_USER_TIMEOUT does not exist: dead
// links are then found by the write deadline alone.
func tcpUserTimeout(time.Duration) func(network, address string, c syscall.RawConn) error {
	return nil
}
