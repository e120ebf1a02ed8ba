package queue

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// The audit log's storage.
//
// Every change of a message record is audited in the transaction that
// makes it: Options.Audit turns the events the change added into audit
// records, and each is appended to a hash chain — its sequence number,
// the previous entry's hash, its own hash over both and the record — so
// that a crash can never leave a change without its audit entry or the
// other way round, and the committer's single goroutine orders the
// chain. Entries are sealed like every spool record (the recipients'
// addresses are personal data); the hash is over the plaintext, so a
// verifier needs the spool key. Signed checkpoints, verification, search
// and retention are the audit room's (gateway/audit); this file only
// stores, in order, and never rewrites an entry.

var (
	bucketAudit            = []byte("audit")                 // seq (8 bytes, big endian) → sealed AuditEntry
	bucketAuditCheckpoints = []byte("audit-checkpoints")     // seq → checkpoint (signed, no personal data)
	keyAuditHead           = []byte("audit-head")            // in bucketMeta: sealed {seq, hash} of the last entry
	keyAuditBase           = []byte("audit-base")            // in bucketMeta: sealed {seq, hash} of the last entry pruned
	keyAuditLastCheckpoint = []byte("audit-last-checkpoint") // in bucketMeta: sealed {seq} of the newest checkpoint
)

const kindAudit = "audit"

// AuditFunc makes the audit records (JSON objects) of the events a
// change of m added; finished says the change finished the message (its
// last recipient reached a final state). It runs inside the transaction
// and must not touch the spool.
type AuditFunc func(m *Message, events []Event, finished bool) [][]byte

// AuditEntry is one link of the chain: the record and the hashes that
// bind it to its place.
type AuditEntry struct {
	Seq    uint64          `json:"seq"`
	Prev   string          `json:"prev"` // hex SHA-256 of the previous entry, "" for the first
	Hash   string          `json:"hash"` // AuditHash(Seq, Prev, Record)
	Record json.RawMessage `json:"record"`
}

// AuditHash is the hash of an entry: SHA-256 over a domain label, the
// sequence number, the previous hash and the record, so that an entry
// cannot be moved, edited or cut out of the chain unnoticed.
func AuditHash(seq uint64, prev string, record []byte) string {
	h := sha256.New()
	h.Write([]byte("sealgate audit v1\x00"))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seq)
	h.Write(b[:])
	h.Write([]byte(prev))
	h.Write([]byte{0})
	h.Write(record)
	return hex.EncodeToString(h.Sum(nil))
}

type auditHead struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// metaHead reads a sealed {seq, hash} from bucketMeta (zero when absent).
func (s *Store) metaHead(tx *bolt.Tx, key []byte) (auditHead, error) {
	var h auditHead
	sealed := tx.Bucket(bucketMeta).Get(key)
	if sealed == nil {
		return h, nil
	}
	plain, err := s.seal.open(kindMeta, string(key), sealed)
	if err != nil {
		return h, fmt.Errorf("%s does not open: %w", key, err)
	}
	return h, json.Unmarshal(plain, &h)
}

func (s *Store) putMetaHead(tx *bolt.Tx, key []byte, h auditHead) error {
	data, _ := json.Marshal(h)
	return tx.Bucket(bucketMeta).Put(key, s.seal.seal(kindMeta, string(key), data))
}

func auditKey(seq uint64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, seq)
	return k
}

// appendAudit chains records after the head, inside tx.
func (s *Store) appendAudit(tx *bolt.Tx, records [][]byte) error {
	if len(records) == 0 {
		return nil
	}
	b, err := tx.CreateBucketIfNotExists(bucketAudit)
	if err != nil {
		return err
	}
	head, err := s.metaHead(tx, keyAuditHead)
	if err != nil {
		return err
	}
	for _, rec := range records {
		if !json.Valid(rec) {
			return errors.New("audit record is not JSON")
		}
		var compact bytes.Buffer
		json.Compact(&compact, rec)
		e := AuditEntry{Seq: head.Seq + 1, Prev: head.Hash, Record: compact.Bytes()}
		e.Hash = AuditHash(e.Seq, e.Prev, e.Record)
		data, err := json.Marshal(e)
		if err != nil {
			return err
		}
		id := string(auditKey(e.Seq))
		if err := b.Put([]byte(id), s.seal.seal(kindAudit, id, data)); err != nil {
			return err
		}
		head = auditHead{Seq: e.Seq, Hash: e.Hash}
	}
	return s.putMetaHead(tx, keyAuditHead, head)
}

// auditChange audits what a change of m added (events since the last
// audited one, and its finishing) and puts the webhook events it makes
// in the outbox, inside tx; putMessage calls it.
func (s *Store) auditChange(tx *bolt.Tx, m *Message) error {
	if s.opts.Audit == nil && s.opts.Webhooks == nil {
		return nil
	}
	finished := !m.DoneAt.IsZero() && !m.AuditedDone
	if m.AuditedEvents >= len(m.Events) && !finished {
		return nil
	}
	events := m.Events[min(m.AuditedEvents, len(m.Events)):]
	if s.opts.Audit != nil {
		if err := s.appendAudit(tx, s.opts.Audit(m, events, finished)); err != nil {
			return err
		}
	}
	if s.opts.Webhooks != nil {
		if err := s.putWebhooks(tx, s.opts.Webhooks(m, events, finished)); err != nil {
			return err
		}
	}
	m.AuditedEvents, m.AuditedDone = len(m.Events), !m.DoneAt.IsZero()
	return nil
}

// Audit appends records that belong to no message change (an admin's
// deletion, a policy reload, a key import), committed like any change.
func (s *Store) Audit(records ...[]byte) error {
	return s.commit(context.Background(), 0, func(tx *bolt.Tx) error { return s.appendAudit(tx, records) })
}

// AuditHead is the last entry's sequence number and hash (0, "" when
// the log is empty).
func (s *Store) AuditHead() (uint64, string, error) {
	return s.auditMeta(keyAuditHead)
}

// AuditBase is the last entry pruned: its sequence number and hash (0,
// "" when nothing was pruned). The first entry kept must follow it.
func (s *Store) AuditBase() (uint64, string, error) {
	return s.auditMeta(keyAuditBase)
}

// AuditLastCheckpoint is the sequence number of the newest checkpoint
// (0 when none was made): a verifier walks the checkpoints back from it.
func (s *Store) AuditLastCheckpoint() (uint64, error) {
	seq, _, err := s.auditMeta(keyAuditLastCheckpoint)
	return seq, err
}

func (s *Store) auditMeta(key []byte) (uint64, string, error) {
	var h auditHead
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		h, err = s.metaHead(tx, key)
		return err
	})
	return h.Seq, h.Hash, err
}

// ForEachAudit calls fn for every stored entry from seq from on, in
// order, with the sequence number its key says. An entry that does not
// open or decode comes with its error (and a nil entry): a verifier
// names it instead of stopping. fn's error stops the walk.
func (s *Store) ForEachAudit(from uint64, fn func(seq uint64, e *AuditEntry, err error) error) error {
	return s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAudit)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Seek(auditKey(from)); k != nil; k, v = c.Next() {
			if len(k) != 8 {
				if err := fn(0, nil, fmt.Errorf("key %x is not a sequence number", k)); err != nil {
					return err
				}
				continue
			}
			seq := binary.BigEndian.Uint64(k)
			var e AuditEntry
			plain, err := s.seal.open(kindAudit, string(k), v)
			if err == nil {
				err = json.Unmarshal(plain, &e)
			}
			if err != nil {
				if err := fn(seq, nil, fmt.Errorf("does not open: %w", err)); err != nil {
					return err
				}
				continue
			}
			if err := fn(seq, &e, nil); err != nil {
				return err
			}
		}
		return nil
	})
}

// PutAuditCheckpoint stores a checkpoint (a signed statement of the
// chain's head at seq; JSON, no personal data) and records it as the
// newest, so that a deleted checkpoint is missed.
func (s *Store) PutAuditCheckpoint(seq uint64, checkpoint []byte) error {
	return s.commit(context.Background(), 0, func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketAuditCheckpoints)
		if err != nil {
			return err
		}
		if err := b.Put(auditKey(seq), checkpoint); err != nil {
			return err
		}
		return s.putMetaHead(tx, keyAuditLastCheckpoint, auditHead{Seq: seq})
	})
}

// ForEachAuditCheckpoint calls fn for every checkpoint, oldest first.
func (s *Store) ForEachAuditCheckpoint(fn func(seq uint64, checkpoint []byte) error) error {
	return s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAuditCheckpoints)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			if len(k) != 8 {
				return nil
			}
			return fn(binary.BigEndian.Uint64(k), append([]byte(nil), v...))
		})
	})
}

// AuditCheckpoint is the checkpoint stored at seq (nil: none).
func (s *Store) AuditCheckpoint(seq uint64) ([]byte, error) {
	var out []byte
	err := s.view(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketAuditCheckpoints); b != nil {
			out = append([]byte(nil), b.Get(auditKey(seq))...)
		}
		return nil
	})
	if len(out) == 0 {
		out = nil
	}
	return out, err
}

// PruneAudit removes the entries up to and including seq (a checkpoint
// the caller keeps, which anchors the chain from there on) and the
// checkpoints before it, records seq and its hash as the trail's base,
// and chains record (what was pruned, by whom) — all in one transaction.
// It returns how many entries it removed.
func (s *Store) PruneAudit(seq uint64, record []byte) (int, error) {
	n := 0
	err := s.commit(context.Background(), 0, func(tx *bolt.Tx) error {
		n = 0
		b := tx.Bucket(bucketAudit)
		if b == nil {
			return nil
		}
		k := auditKey(seq)
		v := b.Get(k)
		if v == nil {
			return fmt.Errorf("audit entry %d is not there to prune up to", seq)
		}
		plain, err := s.seal.open(kindAudit, string(k), v)
		if err != nil {
			return fmt.Errorf("audit entry %d does not open: %w", seq, err)
		}
		var e AuditEntry
		if err := json.Unmarshal(plain, &e); err != nil {
			return err
		}
		c := b.Cursor()
		for k, _ := c.First(); k != nil && bytes.Compare(k, auditKey(seq)) <= 0; k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
			n++
		}
		if cb := tx.Bucket(bucketAuditCheckpoints); cb != nil {
			c := cb.Cursor()
			for k, _ := c.First(); k != nil && bytes.Compare(k, auditKey(seq)) < 0; k, _ = c.First() {
				if err := c.Delete(); err != nil {
					return err
				}
			}
		}
		if err := s.putMetaHead(tx, keyAuditBase, auditHead{Seq: e.Seq, Hash: e.Hash}); err != nil {
			return err
		}
		return s.appendAudit(tx, [][]byte{record})
	})
	return n, err
}

// AuditedMessages counts the messages in the spool whose events were
// written to the audit trail (audit verify: a trail deleted whole).
func (s *Store) AuditedMessages() (int, error) {
	n := 0
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMessages).ForEach(func(k, v []byte) error {
			m, err := s.decodeMessage(string(k), v)
			if err == nil && (m.AuditedEvents > 0 || m.AuditedDone) {
				n++
			}
			return nil
		})
	})
	return n, err
}
