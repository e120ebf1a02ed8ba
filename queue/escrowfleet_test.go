package queue

import (
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// boltShared is a fleet's shared escrow store for tests: transactional
// buckets in a bbolt file of their own, as pgstore's are in PostgreSQL.
type boltShared struct{ db *bolt.DB }

func newBoltShared(t *testing.T) boltShared {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "shared.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketEscrowMeta, bucketEscrowMsgs, bucketEscrowRcpts, bucketEscrowTokens,
			bucketEscrowQueue, bucketEscrowContent, bucketEscrowSenderTokens} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return boltShared{db}
}

func (b boltShared) KVUpdate(fn func(tx KVTx) error) error {
	return b.db.Update(func(tx *bolt.Tx) error { return fn(boltKV{tx}) })
}

func (b boltShared) KVView(fn func(tx KVTx) error) error {
	return b.db.View(func(tx *bolt.Tx) error { return fn(boltKV{tx}) })
}

// A fleet's node that stops between the shared escrow commit and its
// spool's loses no access event from the audit trail: the record stays
// marked as not audited, and the leader's sweep audits it (once).
func TestFleetEscrowEventsAreAuditedAfterAStopBetweenCommits(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
	dir := t.TempDir()
	var mu sync.Mutex
	var audited []string
	opts := Options{Path: filepath.Join(dir, "spool.db"), KeyFile: filepath.Join(dir, "spool.key"), Now: clock.Now,
		AuditEscrow: func(_, _, rcpt string, events []EscrowEvent) [][]byte {
			mu.Lock()
			defer mu.Unlock()
			for _, ev := range events {
				audited = append(audited, rcpt+" "+ev.Kind)
			}
			return [][]byte{[]byte(`{"type":"escrow"}`)}
		}}
	shared := newBoltShared(t)
	open := func() (*Store, *Escrow) {
		s, err := Open(opts)
		if err != nil {
			t.Fatal(err)
		}
		e, err := s.OpenEscrow(EscrowOptions{KeyFile: filepath.Join(dir, "escrow.key")})
		if err != nil {
			t.Fatal(err)
		}
		e.shared = shared
		return s, e
	}
	kinds := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(audited)
	}

	s, e := open()
	rcptID, _, err := e.Deposit(EscrowDeposit{QueueID: "q1", EnvelopeFrom: "dr@clinic.test", Recipient: "pat@mail.test"}, []byte("Subject: x\r\n\r\nresults\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	before := len(kinds())
	if before == 0 {
		t.Fatal("the deposit's events were not audited")
	}
	if _, err := e.Sweep(); err != nil || len(kinds()) != before {
		t.Fatalf("a sweep audited events already on the trail again: %v %v", kinds(), err)
	}

	// The node stops: the next change commits in the shared store and
	// cannot follow in the spool.
	s.Close()
	if err := e.RecordFor(rcptID, EscrowOpened, "192.0.2.7", ""); !errors.Is(err, errSharedCommitted) {
		t.Fatalf("a change with the spool closed: %v", err)
	}
	if slices.Contains(kinds(), "pat@mail.test "+EscrowOpened) {
		t.Fatal("the event reached a closed spool")
	}

	s, e = open()
	defer s.Close()
	if _, err := e.Sweep(); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(kinds(), "pat@mail.test "+EscrowOpened) {
		t.Error("the sweep audited an event younger than its grace (its node may be about to)")
	}
	clock.Add(2 * unauditedGrace)
	if _, err := e.Sweep(); err != nil {
		t.Fatal(err)
	}
	got := kinds()
	if n := len(got) - before; n != 1 || got[len(got)-1] != "pat@mail.test "+EscrowOpened {
		t.Fatalf("after the sweep the trail gained %v, want the one opened event", got[before:])
	}
	if _, err := e.Sweep(); err != nil || len(kinds()) != len(got) {
		t.Errorf("a second sweep audited again: %v %v", kinds()[len(got):], err)
	}
}
