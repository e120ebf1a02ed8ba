// Package safeio writes files so that a crash leaves either the old
// content or the whole new one, never a torn file: the data goes to a
// temporary file in the same directory, which is synced and only then
// renamed (or linked) into place, and the directory is synced so that
// the new name itself is durable.
//
// Every failure on the way — creating, chmod, writing, syncing, closing
// the temporary file — is returned, and the target is left untouched:
// a short write must never be renamed over a key.
package safeio

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// WriteFile replaces path with data, created with mode. The directory is
// created 0700 if needed.
func WriteFile(path string, data []byte, mode os.FileMode) error {
	return WriteFunc(path, mode, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteFunc replaces path with what write writes. If write returns an
// error, nothing is renamed and that error is returned (wrapped).
func WriteFunc(path string, mode os.FileMode, write func(w io.Writer) error) error {
	tmp, err := writeTemp(path, mode, write)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("safeio: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

// CreateFile writes data to path only if path does not exist yet; if it
// does, it returns an error matching fs.ErrExist and leaves it alone.
// It is for files that must never be replaced once made, such as keys.
func CreateFile(path string, data []byte, mode os.FileMode) error {
	tmp, err := writeTemp(path, mode, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	// link(2), unlike rename(2), fails when the target exists.
	if err := os.Link(tmp, path); err != nil {
		return fmt.Errorf("safeio: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

// writeTemp writes a synced temporary file next to path and returns its
// name; on any error it removes it.
func writeTemp(path string, mode os.FileMode, write func(w io.Writer) error) (name string, err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("safeio: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return "", fmt.Errorf("safeio: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(mode); err != nil {
		return "", fmt.Errorf("safeio: chmod %s: %w", f.Name(), err)
	}
	if err := write(f); err != nil {
		return "", fmt.Errorf("safeio: write %s: %w", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("safeio: fsync %s: %w", f.Name(), err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("safeio: close %s: %w", f.Name(), err)
	}
	return f.Name(), nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("safeio: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("safeio: fsync %s: %w", dir, err)
	}
	return nil
}
