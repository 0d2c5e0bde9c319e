package gateway

import (
	"net"
	"syscall"
)

// nodeConnAlive reports whether an idle connection to a node is still
// open: nothing to read yet (EAGAIN). A closed (EOF), reset or talking
// (unasked bytes) connection is not reusable. One non-blocking peek: a
// system call, but no goroutine watching each idle connection.
func nodeConnAlive(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
		return true // never wait for readiness
	})
	return err == nil && alive
}
