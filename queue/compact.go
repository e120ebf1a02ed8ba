package queue

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Online compaction.
//
// bbolt never gives pages back to the file system: after a backlog of
// 75,000 messages drains, the spool file stays as large as the backlog
// made it. Compact copies the live pages into a new file while the
// spool is paused for a moment, and swaps it in without a window in
// which the file is unlocked: the new file is opened (and locked) before
// it is renamed over the old one, whose handle is closed only then.

// Compaction thresholds: a file is rewritten when at least half of it,
// and at least CompactMinFree bytes, is free pages.
const (
	CompactMinFree  = 32 << 20
	compactTxMax    = 16 << 20 // bytes copied per transaction
	compactWaitStep = 5 * time.Millisecond
)

// CompactResult says what Compact did: the file's size before and after,
// or why it left it alone.
type CompactResult struct {
	Before, After int64
	Skipped       string // why nothing was done ("" when compacted)
	Paused        time.Duration
}

// Compact rewrites the spool file with its live data only, when free
// pages are at least half of the file and CompactMinFree (force: in any
// case). It waits for the file to be idle — no transaction running, so
// readers and the committer finish first — at most until ctx ends, and
// holds every reader and writer off while it copies, which after a
// drained backlog is the live data of the records still kept.
func (s *Store) Compact(ctx context.Context, force bool) (res CompactResult, err error) {
	path := s.opts.Path
	st, err := os.Stat(path)
	if err != nil {
		return res, err
	}
	res.Before = st.Size()
	var free int64
	s.withDB(func(db *bolt.DB) error {
		free = int64(db.Stats().FreePageN+db.Stats().PendingPageN) * int64(db.Info().PageSize)
		return nil
	})
	if !force && (free < CompactMinFree || free*2 < res.Before) {
		res.After, res.Skipped = res.Before, fmt.Sprintf("%d of %d bytes free: not worth it", free, res.Before)
		return res, nil
	}
	for !s.dbMu.TryLock() {
		select {
		case <-ctx.Done():
			res.After, res.Skipped = res.Before, "the spool never went idle"
			return res, nil
		case <-s.stop:
			return res, ErrClosed
		case <-time.After(compactWaitStep):
		}
	}
	defer s.dbMu.Unlock()
	start := time.Now()
	defer func() { res.Paused = time.Since(start) }()

	select {
	case <-s.stop:
		return res, ErrClosed
	default:
	}
	tmp := path + ".compact"
	os.Remove(tmp) // what an interrupted compaction left
	dst, err := openDB(tmp, s.opts.LockTimeout, s.logger)
	if err != nil {
		return res, fmt.Errorf("compact: %w", err)
	}
	if err := bolt.Compact(dst, s.db, compactTxMax); err != nil {
		dst.Close()
		os.Remove(tmp)
		return res, fmt.Errorf("compact: %w", err)
	}
	if err := dst.Sync(); err != nil {
		dst.Close()
		os.Remove(tmp)
		return res, fmt.Errorf("compact: %w", err)
	}
	// The new file is open and locked under its temporary name; renamed
	// over the old one, it is the spool, and nobody could take the
	// spool's lock in between.
	if err := os.Rename(tmp, path); err != nil {
		dst.Close()
		os.Remove(tmp)
		return res, fmt.Errorf("compact: %w", err)
	}
	old := s.db
	s.db = dst
	if err := old.Close(); err != nil {
		s.logger.Warn("closing the spool file replaced by compaction", "err", err)
	}
	if err := syncDirOf(path); err != nil {
		return res, fmt.Errorf("compact: %w", err)
	}
	if st, err := os.Stat(path); err == nil {
		res.After = st.Size()
	}
	return res, nil
}

// syncDirOf makes a rename in path's directory durable.
func syncDirOf(path string) error {
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
