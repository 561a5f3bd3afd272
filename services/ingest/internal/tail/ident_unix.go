//go:build unix

package tail

import (
	"os"
	"syscall"
)

// fileID returns the device and inode of a file, which survive a rename.
func fileID(info os.FileInfo) (dev, ino uint64) {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), uint64(st.Ino)
	}
	return 0, 0
}
