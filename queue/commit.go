package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Group commit.
//
// An fsync costs far more than the writes of one message, so every
// mutation goes through one committer goroutine: it takes the requests
// that are waiting, runs them in one bbolt transaction (one fsync), and
// answers each. While it commits, new requests wait and form the next
// batch, so a busy spool commits large batches and an idle one commits
// a lone request at once. (bbolt's own Batch waits up to MaxBatchDelay
// for company, which caps a single sender's rate.)
//
// A delivery attempt's record is a lazy request: the mail has already
// left, and while mail is coming in (an urgent request came within the
// last lazyCommitWait) the record waits up to lazyCommitWait for the
// next message's intake so that both share one fsync. Without it, a
// lone client paid two commits per message, its own and the delivery's
// before it. An urgent request ends the wait at once. With nothing
// coming in (a backlog draining) records do not wait: the committer is
// kept busy by them alone, and a wait would only hold delivery slots.
// A crash within the wait repeats that delivery, as a crash between the
// destination's 250 and any commit does.
//
// The request channel is unbuffered: a request is only ever handed to a
// committer that is running and will answer it. With a buffer, a request
// sent just after the committer had drained the channel at Close stayed
// there, unanswered, and its sender waited for ever.

// Bounds of one batch.
const (
	maxBatchRequests = 256
	maxBatchBytes    = 64 << 20
	lazyCommitWait   = 5 * time.Millisecond
)

// commitReq is one mutation waiting for the committer.
type commitReq struct {
	fn   func(tx *bolt.Tx) error
	size int  // bytes it writes, to bound a batch
	lazy bool // may wait lazyCommitWait for company
	done chan error
}

// Close lets the batch being committed finish, refuses the requests
// still waiting (ErrClosed) and closes the database. Later calls return
// the first call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.committed
		s.dbMu.Lock()
		s.closeErr = s.db.Close()
		s.dbMu.Unlock()
	})
	return s.closeErr
}

// commit hands fn to the committer and waits until the transaction that
// ran it is committed (and fsynced) or failed. fn may run more than
// once (a failed batch is retried one request at a time), so it must only
// write through tx and set results it is allowed to overwrite.
func (s *Store) commit(ctx context.Context, size int, fn func(tx *bolt.Tx) error) error {
	return s.commitReq(ctx, &commitReq{fn: fn, size: size, done: make(chan error, 1)})
}

// commitLazy is commit for a change that may wait a moment for company
// (see lazyCommitWait).
func (s *Store) commitLazy(fn func(tx *bolt.Tx) error) error {
	return s.commitReq(context.Background(), &commitReq{fn: fn, lazy: true, done: make(chan error, 1)})
}

func (s *Store) commitReq(ctx context.Context, req *commitReq) error {
	select {
	case <-s.stop:
		return ErrClosed
	default:
	}
	select {
	case s.reqs <- req:
	case <-s.stop:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once handed over, wait for the verdict even if ctx ends: the
	// change may be committed, and the caller must know.
	return <-req.done
}

// commitLoop is the committer; it runs until Close.
func (s *Store) commitLoop() {
	defer close(s.committed)
	var lastUrgent time.Time // when an urgent request last came
	for {
		var first *commitReq
		select {
		case first = <-s.reqs:
		case <-s.stop:
			s.refuseWaiting()
			return
		}
		batch, size := []*commitReq{first}, first.size
		var wait *time.Timer
		var waitC <-chan time.Time
		now := time.Now()
		if !first.lazy {
			lastUrgent = now
		} else if now.Sub(lastUrgent) < s.lazyWait {
			wait = time.NewTimer(s.lazyWait)
			waitC = wait.C
			s.lazyWaiting.Store(1)
		}
		take := func(r *commitReq) {
			batch = append(batch, r)
			size += r.size
			if !r.lazy {
				lastUrgent = time.Now()
				waitC = nil // an urgent request: commit what is here
			}
		}
	gather:
		for len(batch) < maxBatchRequests && size < maxBatchBytes {
			if waitC == nil {
				select {
				case r := <-s.reqs:
					take(r)
				default:
					break gather
				}
				continue
			}
			select {
			case r := <-s.reqs:
				take(r)
			case <-waitC:
				waitC = nil
			case <-s.stop:
				break gather // commit what is here; the next turn stops
			}
		}
		if wait != nil {
			wait.Stop()
			s.lazyWaiting.Store(0)
		}
		s.commitBatch(batch)
	}
}

// refuseWaiting answers the senders blocked on reqs at Close. Once the
// committer has exited nobody receives on reqs, so a later sender's
// select can only take stop.
func (s *Store) refuseWaiting() {
	for {
		select {
		case r := <-s.reqs:
			r.done <- ErrClosed
		default:
			return
		}
	}
}

// commitBatch runs a batch in one transaction. If any request fails, the
// transaction is rolled back and every request runs again on its own, so
// one bad request cannot fail the others.
func (s *Store) commitBatch(batch []*commitReq) {
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, r := range batch {
			if err := r.fn(tx); err != nil {
				return err
			}
		}
		return nil
	})
	s.batches.Add(1)
	if err == nil || len(batch) == 1 {
		for _, r := range batch {
			r.done <- wrapCommitErr(err)
		}
		return
	}
	for _, r := range batch {
		r.done <- wrapCommitErr(s.db.Update(r.fn))
		s.batches.Add(1)
	}
}

// wrapCommitErr leaves the errors callers branch on as they are and
// marks everything else as a failure to commit.
func wrapCommitErr(err error) error {
	switch {
	case err == nil, errors.Is(err, ErrNotFound), errors.Is(err, errCorrupt), errors.Is(err, ErrDuplicate):
		return err
	case errors.Is(err, berrors.ErrDatabaseNotOpen):
		return ErrClosed
	}
	return fmt.Errorf("queue: commit: %w", err)
}

// view runs a read transaction; a closed store gives ErrClosed.
func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	return s.withDB(func(db *bolt.DB) error { return closedErr(db.View(fn)) })
}

// withDB runs fn on the open spool file, which Compact may not replace
// meanwhile. Compact only takes the file when nobody holds it (TryLock),
// so a nested withDB cannot deadlock behind it.
func (s *Store) withDB(fn func(db *bolt.DB) error) error {
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	return fn(s.db)
}

func closedErr(err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}
