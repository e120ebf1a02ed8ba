package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// The escrow store keeps its records in named buckets of ordered keys,
// in transactions: the spool's bbolt file on a single node, a shared
// store's tables in a fleet (SharedKV), behind the same small interface,
// so that the escrow's logic — keys, tokens, codes, revocation — is one
// code path for both. Its values are sealed before they reach either
// (under the escrow key, each message's content under its own key): a
// shared database sees only ciphertext and token hashes.

// KVTx is one transaction. A function given one may be run more than
// once (a commit retried after a conflict) and must only change what it
// writes through it.
type KVTx interface {
	Bucket(name []byte) KVBucket
}

// KVBucket is a bucket of a transaction, in bbolt's terms.
type KVBucket interface {
	Get(key []byte) []byte
	Put(key, value []byte) error
	Delete(key []byte) error
	ForEach(fn func(k, v []byte) error) error
	Cursor() KVCursor
}

// KVCursor walks a bucket in key order.
type KVCursor interface {
	First() (k, v []byte)
	Seek(seek []byte) (k, v []byte)
	Next() (k, v []byte)
}

// ErrCommitUnknown: a shared store could not tell whether a transaction
// committed (the connection failed during COMMIT). What it may have
// made permanent must be treated as if it had.
var ErrCommitUnknown = errors.New("queue: the shared store did not confirm the commit")

// errSharedCommitted: the shared transaction committed, and what
// followed it in the spool (its audit entries) failed.
var errSharedCommitted = errors.New("queue: committed in the shared store, not followed in the spool")

// committedMaybe reports whether err leaves open that the escrow's
// change was made (so what it references must stay).
func committedMaybe(err error) bool {
	return errors.Is(err, ErrCommitUnknown) || errors.Is(err, errSharedCommitted)
}

// SharedKV is a shared store's transactional buckets (pgstore
// implements it). Update runs fn in a serializable transaction,
// retrying it on a conflict with another node; a failed read inside fn
// fails the commit.
type SharedKV interface {
	KVUpdate(fn func(tx KVTx) error) error
	KVView(fn func(tx KVTx) error) error
}

// escrowTx is the escrow's transaction: the buckets, and the spool
// transaction its audit entries and webhook events go into.
type escrowTx struct {
	KVTx
	// spool runs fn inside the spool's transaction: the same one on a
	// single node (one commit for both); on a fleet's node, a spool
	// commit right after the shared one.
	spool func(fn func(tx *bolt.Tx) error) error
	// after runs fn once the transaction has committed (an object store
	// deletion: never while a transaction waits for it).
	after func(fn func())
	// ack, on a fleet's node, marks recipient id's first n events as
	// audited once this node's spool has them (nil on a single node: the
	// same transaction holds both).
	ack func(id string, n int)
	// acked is how many of id's events this transaction has already
	// audited (ack), so that a second write of id in it audits only what
	// is new.
	acked func(id string) int
}

type boltKV struct{ tx *bolt.Tx }

func (b boltKV) Bucket(name []byte) KVBucket {
	bk := b.tx.Bucket(name)
	if bk == nil {
		return nil
	}
	return boltBucket{bk}
}

type boltBucket struct{ *bolt.Bucket }

func (b boltBucket) Cursor() KVCursor { return b.Bucket.Cursor() }

// update runs fn in a write transaction of the escrow's store. size is
// the bytes it writes, for the spool's group commit.
func (e *Escrow) update(size int, fn func(tx escrowTx) error) error {
	var afters []func()
	defer func() {
		for _, f := range afters {
			f()
		}
	}()
	after := func(f func()) { afters = append(afters, f) }
	if e.shared == nil {
		err := e.s.commit(context.Background(), size, func(tx *bolt.Tx) error {
			afters = afters[:0] // the function may run again
			return fn(escrowTx{KVTx: boltKV{tx}, spool: func(f func(*bolt.Tx) error) error { return f(tx) }, after: after})
		})
		if err != nil {
			afters = nil
		}
		return err
	}
	var later []func(*bolt.Tx) error
	var acks map[string]int
	err := e.shared.KVUpdate(func(tx KVTx) error {
		later, afters, acks = later[:0], afters[:0], map[string]int{} // the function may run again
		return fn(escrowTx{KVTx: tx, spool: func(f func(*bolt.Tx) error) error {
			later = append(later, f)
			return nil
		}, after: after, ack: func(id string, n int) { acks[id] = n }, acked: func(id string) int { return acks[id] }})
	})
	if err != nil {
		afters = nil
		return err
	}
	if len(later) == 0 {
		return nil
	}
	// The shared change is made: its audit entries and events follow in
	// this node's spool.
	err = e.s.commit(context.Background(), 0, func(tx *bolt.Tx) error {
		for _, f := range later {
			if err := f(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w: %v", errSharedCommitted, err)
	}
	if err := e.markAudited(acks); err != nil {
		// The entries are in the spool; unmarked, the sweep writes them
		// again (at least once).
		e.s.logger.Warn("escrow: audited events not marked in the shared store", "err", err)
	}
	return nil
}

// markAudited raises the recipients' count of audited events (a fleet's
// node, once its spool holds them).
func (e *Escrow) markAudited(acks map[string]int) error {
	if len(acks) == 0 {
		return nil
	}
	return e.shared.KVUpdate(func(tx KVTx) error {
		etx := escrowTx{KVTx: tx}
		for id, n := range acks {
			r, err := e.getRecipient(etx, id)
			if errors.Is(err, ErrEscrowGone) {
				continue
			}
			if err != nil {
				return err
			}
			if r.AuditedEvents < n {
				r.AuditedEvents = n
				if err := e.writeRecipient(etx, r); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// view runs fn in a read transaction of the escrow's store.
func (e *Escrow) view(fn func(tx escrowTx) error) error {
	noSpool := func(func(*bolt.Tx) error) error { return nil }
	if e.shared == nil {
		return e.s.view(func(tx *bolt.Tx) error { return fn(escrowTx{KVTx: boltKV{tx}, spool: noSpool}) })
	}
	return e.shared.KVView(func(tx KVTx) error { return fn(escrowTx{KVTx: tx, spool: noSpool, after: func(func()) {}}) })
}

// CopyEscrow copies this spool's escrow store into a fleet's shared one
// (sealgate store migrate) and returns how many escrowed messages it
// holds. The shared store must hold no escrow yet or one sealed under
// this node's key (keyFile): records sealed under another key would open
// on no node. Each record is copied in its own transaction, as it is
// (sealed), and only if the shared store lacks it: an interrupted copy is
// finished by running it again, and a second run undoes nothing the
// fleet did since the first.
func (s *Store) CopyEscrow(dst SharedKV, keyFile string) (int, error) {
	inUse, err := s.EscrowInUse()
	if err != nil || !inUse {
		return 0, err
	}
	key, err := readKeyNamed("escrow key", keyFile)
	if err != nil {
		return 0, err
	}
	sl, err := newSealer(key)
	if err != nil {
		return 0, fmt.Errorf("escrow key %s: %w", keyFile, err)
	}
	var check []byte
	err = dst.KVView(func(tx KVTx) error {
		check = tx.Bucket(bucketEscrowMeta).Get(keyCheckName)
		return nil
	})
	if err != nil {
		return 0, err
	}
	if check != nil {
		if plain, err := sl.open(kindMeta, string(keyCheckName), check); err != nil || string(plain) != escrowCheckPlain {
			return 0, fmt.Errorf("%w: the fleet's escrow store is sealed under another key than %s; this node's escrowed messages cannot join it (give the fleet this key, or let them expire here)", ErrEscrowKeyWrong, keyFile)
		}
	}
	messages := 0
	for _, bucket := range escrowBuckets {
		var keys [][]byte
		err := s.view(func(tx *bolt.Tx) error {
			if b := tx.Bucket(bucket); b != nil {
				b.ForEach(func(k, _ []byte) error {
					keys = append(keys, bytes.Clone(k))
					return nil
				})
			}
			return nil
		})
		if err != nil {
			return messages, err
		}
		for _, k := range keys {
			var v []byte
			if err := s.view(func(tx *bolt.Tx) error {
				v = bytes.Clone(tx.Bucket(bucket).Get(k))
				return nil
			}); err != nil {
				return messages, err
			}
			if v == nil {
				continue
			}
			// Only what the fleet lacks: a record it has may have moved on
			// since a first run (revoked, a code spent), and the node's
			// copy, frozen since it joined, must not undo that.
			err := dst.KVUpdate(func(tx KVTx) error {
				b := tx.Bucket(bucket)
				if b.Get(k) != nil {
					return nil
				}
				return b.Put(k, v)
			})
			if err != nil {
				return messages, fmt.Errorf("escrow record: %w", err)
			}
			if bytes.Equal(bucket, bucketEscrowMsgs) {
				messages++
			}
		}
	}
	return messages, nil
}
