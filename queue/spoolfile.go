package queue

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/sealgate/sealgate/internal/safeio"
)

// The spool file.
//
// bbolt maps the file into memory and trusts what it finds there: a file
// cut short (a full disk, a bad copy, a restore that stopped half-way)
// makes it read past the end of the file, which is a SIGBUS, and a page
// of garbage makes it panic while it rebuilds its free list at open.
// Neither may take the process down without saying what is wrong, so
// before handing the file to bbolt, openDB reads it once with plain reads
// (spoolcheck.go): the header, the size it promises, and the shape of
// every page bbolt will follow. The open itself runs with faults turned
// into panics, and a panic becomes ErrSpoolCorrupt.
//
// The spool's directory and file are private to the gateway: writable
// by others they are refused (anyone could swap the spool or its key);
// readable by others they are allowed with a warning, since every record
// in them is sealed.

// openDB checks the spool's directory and file and opens it with bbolt.
func openDB(path string, lockTimeout time.Duration, logger *slog.Logger) (db *bolt.DB, err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool directory: %w", err)
	}
	for _, p := range []string{dir, path} {
		mode, err := safeio.CheckPerm(p, 0o022)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("spool: %w; chmod go-w it", err)
		}
		if mode&0o044 != 0 {
			logger.Warn("spool path is readable by other users; its records are sealed, but chmod go-rwx it", "path", p, "mode", fmt.Sprintf("%o", mode))
		}
	}
	if err := precheckSpoolFile(path); err != nil {
		return nil, err
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("%w: %s: %v", ErrSpoolCorrupt, path, r)
		}
	}()
	deadline := time.Now().Add(lockTimeout)
	for {
		before, statErr := os.Stat(path)
		db, err = bolt.Open(path, 0o600, &bolt.Options{
			Timeout: max(time.Until(deadline), time.Millisecond),
			// The free list is rebuilt by walking the file at open instead of
			// being written at every commit: less I/O per fsync.
			NoFreelistSync: true,
			FreelistType:   bolt.FreelistMapType,
		})
		if err != nil || statErr != nil {
			break
		}
		// A running server's compaction renames a new file over the spool
		// and only then lets go of the old one's lock: an opener that was
		// waiting for that lock now holds a file nobody will read again.
		// The path must still name the file we hold.
		if after, err := os.Stat(path); err == nil && os.SameFile(before, after) {
			break
		}
		db.Close()
		db = nil
		if time.Now().After(deadline) {
			err = berrors.ErrTimeout
			break
		}
	}
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("%w: %s", ErrLocked, path)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
		return nil, fmt.Errorf("%w: %s: %w", ErrSpoolCorrupt, path, err)
	case err != nil:
		return nil, fmt.Errorf("open spool %s: %w", path, err)
	}
	return db, nil
}
