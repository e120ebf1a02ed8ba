package queue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Errors callers branch on.
var (
	// ErrNotFound: no message with that ID is in the spool.
	ErrNotFound = errors.New("queue: no such message")
	// ErrLocked: another process (a running server) holds the spool.
	ErrLocked = errors.New("queue: spool is locked by another process")
	// ErrBodyGone: the message is finished and its body was removed.
	ErrBodyGone = errors.New("queue: message finished, body removed")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("queue: store closed")
)

var (
	bucketMessages   = []byte("messages")
	bucketBodies     = []byte("bodies")
	bucketQuarantine = []byte("quarantine")
)

// Record kinds, part of each record's additional authenticated data.
const (
	kindMessage = "message"
	kindBody    = "body"
)

// Batch bounds of the group commit.
const (
	maxBatchRequests = 256
	maxBatchBytes    = 64 << 20
)

// Options configures Open. Zero durations take the documented defaults.
type Options struct {
	Path         string        // bbolt file; its directory is created 0700
	KeyFile      string        // 32-byte spool key, created 0600 on first open
	RetryInitial time.Duration // first retry delay (1m), doubled per attempt …
	RetryMax     time.Duration // … up to this cap (1h)
	Expiry       time.Duration // a recipient still pending after this is bounced (120h)
	Retention    time.Duration // finished messages are kept, without body, this long (24h)
	Now          func() time.Time
	Logger       *slog.Logger
	LockTimeout  time.Duration // wait for the file lock (1s), then ErrLocked
}

// Store is the spool. Its methods are safe for concurrent use.
type Store struct {
	db     *bolt.DB
	seal   *sealer
	opts   Options
	now    func() time.Time
	logger *slog.Logger

	reqs      chan *commitReq
	stop      chan struct{}
	committed chan struct{} // closed when the committer has exited
	closeOnce sync.Once

	batches     atomic.Int64 // group-commit transactions, for tests and stats
	quarantined atomic.Int64
}

// Open opens (or creates) the spool and starts its committer.
func Open(opts Options) (*Store, error) {
	if opts.RetryInitial <= 0 {
		opts.RetryInitial = time.Minute
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = time.Hour
	}
	if opts.Expiry <= 0 {
		opts.Expiry = 120 * time.Hour
	}
	if opts.Retention <= 0 {
		opts.Retention = 24 * time.Hour
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	key, err := loadOrCreateKey(opts.KeyFile)
	if err != nil {
		return nil, err
	}
	sl, err := newSealer(key)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(opts.Path), 0o700); err != nil {
		return nil, err
	}
	db, err := bolt.Open(opts.Path, 0o600, &bolt.Options{
		Timeout:        opts.LockTimeout,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s", ErrLocked, opts.Path)
	}
	if err != nil {
		return nil, fmt.Errorf("open spool %s: %w", opts.Path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMessages, bucketBodies, bucketQuarantine, bucketDomains, bucketMTASTS, bucketTLSRPT, bucketKeys} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open spool %s: %w", opts.Path, err)
	}
	s := &Store{
		db: db, seal: sl, opts: opts, now: opts.Now, logger: opts.Logger,
		reqs:      make(chan *commitReq, maxBatchRequests),
		stop:      make(chan struct{}),
		committed: make(chan struct{}),
	}
	go s.commitLoop()
	return s, nil
}

// Close stops the committer (requests not yet taken get ErrClosed) and
// closes the database.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.committed
		err = s.db.Close()
	})
	return err
}

// commitReq is one mutation waiting for the group committer.
type commitReq struct {
	fn   func(tx *bolt.Tx) error
	size int // bytes it writes, to bound a batch
	done chan error
}

// commit hands fn to the group committer and waits until the transaction
// that ran it is committed (and fsynced) or failed. fn may run more than
// once (a failed batch is retried one request at a time), so it must only
// write through tx and set results it is allowed to overwrite.
func (s *Store) commit(ctx context.Context, size int, fn func(tx *bolt.Tx) error) error {
	req := &commitReq{fn: fn, size: size, done: make(chan error, 1)}
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

// Enqueue spools a message and returns its ID once the record and body
// are committed and fsynced. Concurrent callers share one transaction
// (group commit): throughput grows with concurrency, and a lone caller
// is committed at once, without waiting for company.
func (s *Store) Enqueue(ctx context.Context, env Envelope, body []byte) (string, error) {
	if len(env.Recipients) == 0 {
		return "", errors.New("queue: message without recipients")
	}
	var id string
	err := s.commit(ctx, len(body), func(tx *bolt.Tx) error {
		var err error
		id, err = s.putNew(tx, env, body, "")
		return err
	})
	if err != nil {
		return "", err
	}
	return id, nil
}

// commitLoop is the group committer: it takes every request waiting,
// runs them in one transaction, and answers each. New requests queue up
// while a commit is in progress and form the next batch.
func (s *Store) commitLoop() {
	defer close(s.committed)
	for {
		var first *commitReq
		select {
		case first = <-s.reqs:
		case <-s.stop:
			s.refuseWaiting()
			return
		}
		batch, size := []*commitReq{first}, first.size
	gather:
		for len(batch) < maxBatchRequests && size < maxBatchBytes {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
				size += r.size
			default:
				break gather
			}
		}
		s.commitBatch(batch)
	}
}

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

func wrapCommitErr(err error) error {
	if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, errCorrupt) {
		return err
	}
	return fmt.Errorf("queue: commit: %w", err)
}

// putNew writes a new message and its body inside tx.
func (s *Store) putNew(tx *bolt.Tx, env Envelope, body []byte, detail string) (string, error) {
	now := s.now()
	id := newID(now)
	m := &Message{
		ID:       id,
		Envelope: env,
		Size:     int64(len(body)),
		Received: now,
		Expires:  now.Add(s.opts.Expiry),
		Events:   []Event{{Time: now, Kind: "received", Detail: detail}},
	}
	for i, r := range env.Recipients {
		rcpt := Recipient{Address: r, State: StateQueued, NextAttempt: now}
		if i < len(env.Decisions) {
			rcpt.Chain, rcpt.Rules = env.Decisions[i].Chain, env.Decisions[i].Rules
		}
		m.Recipients = append(m.Recipients, rcpt)
	}
	if env.Hold != "" {
		m.Held = true
		m.Events = append(m.Events, Event{Time: now, Kind: "held", Detail: "held for review by policy: " + env.Hold})
	}
	if err := s.putMessage(tx, m); err != nil {
		return "", err
	}
	return id, tx.Bucket(bucketBodies).Put([]byte(id), s.seal.seal(kindBody, id, body))
}

func (s *Store) putMessage(tx *bolt.Tx, m *Message) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketMessages).Put([]byte(m.ID), s.seal.seal(kindMessage, m.ID, data))
}

// errCorrupt marks a record that does not decrypt or decode.
var errCorrupt = errors.New("corrupt record")

func (s *Store) decodeMessage(id string, sealed []byte) (*Message, error) {
	plain, err := s.seal.open(kindMessage, id, sealed)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", errCorrupt, id, err)
	}
	var m Message
	if err := json.Unmarshal(plain, &m); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", errCorrupt, id, err)
	}
	return &m, nil
}

// getMessage reads one message inside tx.
func (s *Store) getMessage(tx *bolt.Tx, id string) (*Message, error) {
	sealed := tx.Bucket(bucketMessages).Get([]byte(id))
	if sealed == nil {
		return nil, ErrNotFound
	}
	return s.decodeMessage(id, sealed)
}

// newID returns a unique ID that sorts by creation time: microseconds
// since the epoch in fixed-width hex, then 32 random bits.
func newID(now time.Time) string {
	var r [4]byte
	rand.Read(r[:])
	return fmt.Sprintf("%013x%s", now.UnixMicro(), hex.EncodeToString(r[:]))
}

// Get returns the message record (without body).
func (s *Store) Get(id string) (*Message, error) {
	var m *Message
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		m, err = s.getMessage(tx, id)
		return err
	})
	if errors.Is(err, errCorrupt) {
		s.quarantine(id, err)
		return nil, ErrNotFound
	}
	return m, err
}

// Body returns the decrypted message body.
func (s *Store) Body(id string) ([]byte, error) {
	var body []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		sealed := tx.Bucket(bucketBodies).Get([]byte(id))
		if sealed == nil {
			if tx.Bucket(bucketMessages).Get([]byte(id)) != nil {
				return ErrBodyGone
			}
			return ErrNotFound
		}
		var err error
		body, err = s.seal.open(kindBody, id, sealed)
		if err != nil {
			return fmt.Errorf("%w: body %s: %v", errCorrupt, id, err)
		}
		return nil
	})
	if errors.Is(err, errCorrupt) {
		s.quarantine(id, err)
		return nil, ErrNotFound
	}
	return body, err
}

// List returns every message, oldest first. Corrupt records are
// quarantined and left out.
func (s *Store) List() ([]Message, error) {
	var msgs []Message
	bad := map[string]error{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMessages).ForEach(func(k, v []byte) error {
			m, err := s.decodeMessage(string(k), v)
			if err != nil {
				bad[string(k)] = err
				return nil
			}
			msgs = append(msgs, *m)
			return nil
		})
	})
	for id, cause := range bad {
		s.quarantine(id, cause)
	}
	return msgs, err
}

// Due is a message with recipients still to deliver, and when the
// earliest of them is next due.
type Due struct {
	ID   string
	Next time.Time
}

// Pending lists the messages the scheduler must attempt: not held, with
// at least one recipient not in a final state.
func (s *Store) Pending() ([]Due, error) {
	msgs, err := s.List()
	if err != nil {
		return nil, err
	}
	var due []Due
	for _, m := range msgs {
		if m.Held || !m.DoneAt.IsZero() {
			continue
		}
		var next time.Time
		for _, r := range m.Recipients {
			if !r.State.Final() && (next.IsZero() || r.NextAttempt.Before(next)) {
				next = r.NextAttempt
			}
		}
		if !next.IsZero() {
			due = append(due, Due{ID: m.ID, Next: next})
		}
	}
	return due, nil
}

// quarantine moves a record that cannot be read out of the way: its
// message and body go, as they are, to the quarantine bucket for an
// admin to examine. Nothing is deleted outright.
func (s *Store) quarantine(id string, cause error) {
	err := s.db.Update(func(tx *bolt.Tx) error {
		q := tx.Bucket(bucketQuarantine)
		for _, b := range []struct {
			bucket []byte
			kind   string
		}{{bucketMessages, kindMessage}, {bucketBodies, kindBody}} {
			src := tx.Bucket(b.bucket)
			if v := src.Get([]byte(id)); v != nil {
				if err := q.Put([]byte(id+"/"+b.kind), append([]byte(nil), v...)); err != nil {
					return err
				}
				if err := src.Delete([]byte(id)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		s.logger.Error("cannot quarantine corrupt spool record", "queue_id", id, "err", err)
		return
	}
	s.quarantined.Add(1)
	s.logger.Error("corrupt spool record quarantined", "queue_id", id, "reason", cause.Error())
}
