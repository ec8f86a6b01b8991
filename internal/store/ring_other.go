//go:build !unix

package store

import (
	"errors"
	"os"
)

// Without flock the begin log is never opened (lock_other.go); these are
// never called.
func mapRing(*os.File, int) ([]byte, error) { return nil, errors.ErrUnsupported }

func unmapRing([]byte) error { return nil }
