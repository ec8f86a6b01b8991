//go:build unix

package store

import (
	"os"
	"syscall"
)

// mapRing maps the first size bytes of f, shared: what is written to the
// mapping is in the page cache at once, where a kill of the process
// leaves it.
func mapRing(f *os.File, size int) ([]byte, error) {
	return syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
}

func unmapRing(mem []byte) error { return syscall.Munmap(mem) }
