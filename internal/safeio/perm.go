package safeio

import (
	"errors"
	"fmt"
	"os"
)

// ErrTooOpen: a file or directory grants access that it must not.
var ErrTooOpen = errors.New("permissions too open")

// CheckPerm returns path's permission bits, and an error matching
// ErrTooOpen when they include any bit of deny (0o077: nobody but the
// owner; 0o022: nobody else may write). It follows symbolic links, so
// what is checked is what will be read. A missing path gives an error
// matching os.ErrNotExist.
func CheckPerm(path string, deny os.FileMode) (os.FileMode, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	perm := fi.Mode().Perm()
	if perm&deny != 0 {
		return perm, fmt.Errorf("%s: %w: mode %04o grants %04o", path, ErrTooOpen, perm, perm&deny)
	}
	return perm, nil
}
