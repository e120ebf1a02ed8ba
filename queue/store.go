package queue

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Errors callers branch on.
var (
	// ErrNotFound: no message with that ID is in the spool.
	ErrNotFound = errors.New("queue: no such message")
	// ErrLocked: another process (a running server) holds the spool.
	ErrLocked = errors.New("queue: spool is locked by another process")
	// ErrBodyGone: the message is finished and its body was removed.
	ErrBodyGone = errors.New("queue: message finished, body removed")
	// ErrHeld: the operation needs a message that is not held (retry).
	ErrHeld = errors.New("queue: message is held")
	// ErrFinished: every recipient of the message is final (delivered,
	// bounced or dropped); there is nothing left to hold, retry or
	// re-decide.
	ErrFinished = errors.New("queue: message is finished")
	// ErrDuplicate: a message with the same idempotency key was queued
	// already; its ID comes with the error.
	ErrDuplicate = errors.New("queue: already queued under this idempotency key")
	// ErrAmbiguous: an ID prefix matches more than one message.
	ErrAmbiguous = errors.New("queue: ID prefix matches more than one message")
	// ErrClosed: the store was closed before or during the call.
	ErrClosed = errors.New("queue: store closed")
	// ErrKeyMissing: the spool key file does not exist, but the spool
	// holds records sealed with a key; a new key would open none.
	ErrKeyMissing = errors.New("queue: spool key missing")
	// ErrWrongKey: the spool key does not open this spool's records.
	ErrWrongKey = errors.New("queue: spool key does not match the spool")
	// ErrSpoolCorrupt: the spool file is truncated, overwritten or
	// otherwise not a readable spool; nothing was changed.
	ErrSpoolCorrupt = errors.New("queue: spool file corrupt")
)

var (
	bucketMessages   = []byte("messages")
	bucketBodies     = []byte("bodies")
	bucketQuarantine = []byte("quarantine")
	// bucketIdempotency: idempotency key → {queue ID, created} (24 h).
	bucketIdempotency = []byte("idempotency")
)

// sealedBucket names a bucket whose values are sealed records and the
// kind they are sealed as (each keyed by its bucket key).
type sealedBucket struct {
	name []byte
	kind string
}

func sealedBuckets() []sealedBucket {
	return []sealedBucket{
		{bucketMessages, kindMessage}, {bucketBodies, kindBody}, {bucketDomains, kindDomain},
		{bucketMTASTS, kindMTASTS}, {bucketTLSRPT, kindTLSRPT},
	}
}

// Record kinds, part of each record's additional authenticated data.
const (
	kindMessage = "message"
	kindBody    = "body"
)

// Options configures Open. Zero durations take the documented defaults.
type Options struct {
	Path         string        // bbolt file; its directory is created 0700
	KeyFile      string        // 32-byte spool key, created 0600 when the spool is new
	RetryInitial time.Duration // first retry delay (1m), doubled per attempt …
	RetryMax     time.Duration // … up to this cap (1h)
	Expiry       time.Duration // a recipient still pending after this is bounced (120h)
	Retention    time.Duration // finished messages are kept, without body, this long (24h)
	// Audit makes the audit records of each change of a message; nil
	// audits nothing (audit.go).
	Audit AuditFunc
	// AuditEscrow makes the audit records of an escrowed recipient's
	// access events (link issued, code sent, opened, revoked…); nil
	// audits none.
	AuditEscrow func(queueID, escrowID, recipient string, events []EscrowEvent) [][]byte
	// Webhooks and WebhooksEscrow make the webhook events of the same
	// changes, put in the outbox in the same transaction (webhooks.go).
	Webhooks       WebhookFunc
	WebhooksEscrow WebhookEscrowFunc
	// DelayWarning is how long a recipient may wait before its sender
	// hears that the message is delayed (RFC 3464 Action: delayed), once
	// per recipient; 0 sends no delay notices.
	DelayWarning time.Duration
	Now          func() time.Time
	Logger       *slog.Logger
	LockTimeout  time.Duration // wait for the file lock (1s), then ErrLocked
}

// Store is the spool. Its methods are safe for concurrent use.
type Store struct {
	// db is the open spool file. Every use holds dbMu for reading
	// (withDB); Compact swaps it holding dbMu for writing.
	dbMu   sync.RWMutex
	db     *bolt.DB
	seal   *sealer
	opts   Options
	now    func() time.Time
	logger *slog.Logger

	reqs      chan *commitReq
	stop      chan struct{}
	committed chan struct{} // closed when the committer has exited
	closeOnce sync.Once
	closeErr  error

	batches     atomic.Int64  // group-commit transactions, for tests and stats
	lazyWait    time.Duration // lazyCommitWait; tests lengthen it
	lazyWaiting atomic.Int32  // 1 while the committer holds a lazy request for company
	quarantined atomic.Int64

	shared Shared // a fleet's shared store (UseShared); nil on a single node
}

// Open opens (or creates) the spool and starts its committer. It takes
// the file lock first (ErrLocked after LockTimeout), then the key (see
// key.go): a spool whose key is missing or wrong is refused with
// ErrKeyMissing or ErrWrongKey, a damaged file with ErrSpoolCorrupt.
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
	if opts.Path == "" || opts.KeyFile == "" {
		return nil, errors.New("queue: Options.Path and Options.KeyFile are required")
	}
	db, err := openDB(opts.Path, opts.LockTimeout, opts.Logger)
	if err != nil {
		return nil, err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMessages, bucketBodies, bucketQuarantine, bucketMeta, bucketDomains, bucketMTASTS, bucketTLSRPT, bucketKeys} {
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
	sl, err := unlockSpool(db, opts.KeyFile, opts.Path)
	if err != nil {
		db.Close()
		return nil, err
	}
	var migrated int
	err = db.Update(func(tx *bolt.Tx) error {
		var err error
		migrated, err = migrateIndexKeys(tx, sl)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open spool %s: %w", opts.Path, err)
	}
	if migrated > 0 {
		opts.Logger.Info("destination records moved from clear names to hashed keys", "records", migrated)
	}
	s := &Store{
		db: db, seal: sl, opts: opts, now: opts.Now, logger: opts.Logger,
		reqs:      make(chan *commitReq),
		stop:      make(chan struct{}),
		committed: make(chan struct{}),
		lazyWait:  lazyCommitWait,
	}
	if err := os.MkdirAll(s.bodiesDir(), 0o700); err != nil {
		db.Close()
		return nil, fmt.Errorf("spool bodies directory: %w", err)
	}
	go s.commitLoop()
	return s, nil
}

// Enqueue spools a message and returns its ID once the record and body
// are committed and fsynced. Concurrent callers share one transaction
// (group commit): throughput grows with concurrency, and a lone caller
// is committed at once, without waiting for company.
func (s *Store) Enqueue(ctx context.Context, env Envelope, body []byte) (string, error) {
	if len(env.Recipients) == 0 {
		return "", errors.New("queue: message without recipients")
	}
	if len(body) > inlineBodyMax {
		return s.enqueueToFile(ctx, env, body)
	}
	var id string
	err := s.commit(ctx, len(body), func(tx *bolt.Tx) error {
		var err error
		id, err = s.putNew(tx, env, body, "")
		return err
	})
	if err != nil {
		return id, err
	}
	return id, nil
}

// enqueueToFile commits a large message: its body sealed in a file
// (fsynced first), the record naming the file, then the file's name made
// durable — only then is the message accepted.
func (s *Store) enqueueToFile(ctx context.Context, env Envelope, body []byte) (string, error) {
	ref, tmp, err := s.writeBodyFile(body)
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp)
	var id string
	err = s.commit(ctx, 4<<10, func(tx *bolt.Tx) error {
		var err error
		if id, err = s.putNewRecord(tx, env, int64(len(body)), encodeBodyRef(ref), ""); err != nil {
			return err
		}
		return s.linkBody(tmp, id)
	})
	if errors.Is(err, ErrDuplicate) {
		return id, err
	}
	if err != nil {
		return "", err
	}
	if err := s.syncBodiesDir(); err != nil {
		return "", fmt.Errorf("body file: %w", err)
	}
	return id, nil
}

// putNew writes a new message and its body inside tx.
func (s *Store) putNew(tx *bolt.Tx, env Envelope, body []byte, detail string) (string, error) {
	return s.putNewRecord(tx, env, int64(len(body)), body, detail)
}

// putNewRecord writes a new message of size octets inside tx, with
// bodyRecord (the body, or a reference to its file) as its body record.
func (s *Store) putNewRecord(tx *bolt.Tx, env Envelope, size int64, bodyRecord []byte, detail string) (string, error) {
	now := s.now()
	id := env.ID
	switch {
	case id == "":
		id = newID(now)
	case !validID(id):
		return "", fmt.Errorf("queue: %q is not a queue ID", id)
	case tx.Bucket(bucketMessages).Get([]byte(id)) != nil:
		return "", fmt.Errorf("queue: ID %s is in use", id)
	}
	env.ID = ""
	if k := env.IdempotencyKey; k != "" {
		env.IdempotencyKey = ""
		b, err := tx.CreateBucketIfNotExists(bucketIdempotency)
		if err != nil {
			return "", err
		}
		if v := b.Get([]byte(k)); v != nil {
			var e idempotencyEntry
			if json.Unmarshal(v, &e) == nil {
				return e.ID, ErrDuplicate
			}
		}
		data, _ := json.Marshal(idempotencyEntry{ID: id, Created: now})
		if err := b.Put([]byte(k), data); err != nil {
			return "", err
		}
	}
	m := &Message{
		ID:       id,
		Envelope: env,
		Size:     size,
		Received: now,
		Expires:  now.Add(s.opts.Expiry),
		Events:   []Event{{Time: now, Kind: "received", Detail: detail}},
	}
	for i, r := range env.Recipients {
		rcpt := Recipient{Address: r, State: StateQueued, NextAttempt: now}
		if i < len(env.Decisions) {
			rcpt.Chain, rcpt.Rules, rcpt.By = env.Decisions[i].Chain, env.Decisions[i].Rules, env.Decisions[i].By
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
	return id, tx.Bucket(bucketBodies).Put([]byte(id), s.seal.seal(kindBody, id, bodyRecord))
}

func (s *Store) putMessage(tx *bolt.Tx, m *Message) error {
	if err := s.auditChange(tx, m); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
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

// NewID returns a fresh queue ID for a message about to be spooled
// (Envelope.ID), made as the spool makes its own.
func NewID(now time.Time) string { return newID(now) }

// validID: 13 hex digits of time and 8 of randomness, as newID makes.
func validID(id string) bool {
	if len(id) != 21 {
		return false
	}
	_, err := hex.DecodeString("0" + id)
	return err == nil
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
	err := s.view(func(tx *bolt.Tx) error {
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

// Resolve returns the ID of the one message whose ID is or starts with
// prefix: ErrNotFound when none does, ErrAmbiguous (naming a few of
// them) when several do. It reads keys only, never a record.
func (s *Store) Resolve(prefix string) (string, error) {
	if prefix == "" {
		return "", ErrNotFound
	}
	var matches []string
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketMessages).Cursor()
		for k, _ := c.Seek([]byte(prefix)); k != nil && bytes.HasPrefix(k, []byte(prefix)) && len(matches) < 4; k, _ = c.Next() {
			if string(k) == prefix {
				matches = []string{prefix} // a whole ID is never ambiguous
				return nil
			}
			matches = append(matches, string(k))
		}
		return nil
	})
	switch {
	case err != nil:
		return "", err
	case len(matches) == 0:
		return "", ErrNotFound
	case len(matches) > 1:
		more := ""
		if len(matches) > 3 {
			matches, more = matches[:3], ", …"
		}
		return "", fmt.Errorf("%q matches %s%s: %w", prefix, strings.Join(matches, ", "), more, ErrAmbiguous)
	}
	return matches[0], nil
}

// Body returns the decrypted message body.
func (s *Store) Body(id string) ([]byte, error) {
	var body []byte
	err := s.view(func(tx *bolt.Tx) error {
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
		if body, err = s.resolveBody(id, body); err != nil {
			if isBodyDamage(err) {
				return fmt.Errorf("%w: body %s: %v", errCorrupt, id, err)
			}
			return fmt.Errorf("body %s: %w", id, err) // passing: not the file's fault
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
	err := s.view(func(tx *bolt.Tx) error {
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

// ListPage returns at most limit messages (limit <= 0: all) whose IDs
// sort after after ("" for the start), oldest first, and the ID to pass
// as after for the next page ("" when there is none). IDs sort by
// arrival, so pages walk the spool in order without reading it whole.
func (s *Store) ListPage(after string, limit int) ([]Message, string, error) {
	var msgs []Message
	next := ""
	bad := map[string]error{}
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketMessages).Cursor()
		k, v := c.First()
		if after != "" {
			if k, v = c.Seek([]byte(after)); k != nil && string(k) == after {
				k, v = c.Next()
			}
		}
		for ; k != nil; k, v = c.Next() {
			if limit > 0 && len(msgs) == limit {
				next = msgs[len(msgs)-1].ID
				return nil
			}
			m, err := s.decodeMessage(string(k), v)
			if err != nil {
				bad[string(k)] = err
				continue
			}
			msgs = append(msgs, *m)
		}
		return nil
	})
	for id, cause := range bad {
		s.quarantine(id, cause)
	}
	return msgs, next, err
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

type idempotencyEntry struct {
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
}

// idempotencyTTL is how long an idempotency key is remembered.
const idempotencyTTL = 24 * time.Hour

// sweepIdempotency forgets the keys older than idempotencyTTL.
func (s *Store) sweepIdempotency() error {
	cutoff := s.now().Add(-idempotencyTTL)
	return s.commit(context.Background(), 0, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketIdempotency)
		if b == nil {
			return nil
		}
		var old [][]byte
		b.ForEach(func(k, v []byte) error {
			var e idempotencyEntry
			if json.Unmarshal(v, &e) != nil || e.Created.Before(cutoff) {
				old = append(old, append([]byte(nil), k...))
			}
			return nil
		})
		for _, k := range old {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}
