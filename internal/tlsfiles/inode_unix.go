//go:build unix

package tlsfiles

import (
	"os"
	"syscall"
)

// inode tells a file replaced by a rename from the old one even when size
// and modification time were preserved (cp -p, some secret mounts).
func inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino)
	}
	return 0
}
