package transport

import (
	"syscall"
	"time"
)

// tcpUserTimeout makes the kernel abort a connection whose sent data stays
// unacknowledged for d (TCP_USER_TIMEOUT). Without it, writes into a link
// that silently drops packets keep "succeeding" into the send buffer while
// TCP backs its retransmissions off to many seconds: after a partition
// heals, the old connection can sit idle for seconds. With it, the writer
// sees the failure, redials, and a fresh connection gets through as soon as
// the network does. A peer's kernel acknowledges even while its process is
// stopped or busy, so a slow peer does not trip it.
func tcpUserTimeout(d time.Duration) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			const tcpUserTimeoutOpt = 0x12 // TCP_USER_TIMEOUT, linux/tcp.h
			serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpUserTimeoutOpt, int(d/time.Millisecond))
		})
		if err != nil {
			return err
		}
		return serr
	}
}
