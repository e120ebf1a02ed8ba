package queue

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// A message sealed under an earlier key (as after a key was lost and
// regenerated) is quarantined when read, listed with its reason, and put
// back whole — body and all, due at once — when that key is handed in.
func TestQuarantineListAndRestore(t *testing.T) {
	s := openTest(t, Options{})
	keep := enqueue(t, s, "a@o.test", "kept", "x@d.test")
	id := enqueue(t, s, "a@o.test", "the only copy", "y@d.test")
	garbage := enqueue(t, s, "a@o.test", "lost", "z@d.test")

	// Reseal id under an "old" key, and make garbage unreadable by any.
	oldKey := make([]byte, keySize)
	oldKey[0] = 7
	old, _ := newSealer(oldKey)
	err := s.db.Update(func(tx *bolt.Tx) error {
		rec, _ := s.seal.open(kindMessage, id, tx.Bucket(bucketMessages).Get([]byte(id)))
		body, _ := s.seal.open(kindBody, id, tx.Bucket(bucketBodies).Get([]byte(id)))
		tx.Bucket(bucketMessages).Put([]byte(id), old.seal(kindMessage, id, rec))
		tx.Bucket(bucketBodies).Put([]byte(id), old.seal(kindBody, id, body))
		return tx.Bucket(bucketMessages).Put([]byte(garbage), []byte("not a sealed record at all, just bytes"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if msgs, _ := s.List(); len(msgs) != 1 || msgs[0].ID != keep {
		t.Fatalf("List = %+v, want only %s", msgs, keep)
	}

	q, err := s.Quarantined()
	if err != nil || len(q) != 2 {
		t.Fatalf("Quarantined = %+v, %v", q, err)
	}
	byID := map[string]QuarantinedMessage{q[0].ID: q[0], q[1].ID: q[1]}
	if got := byID[id]; strings.Join(got.Parts, ",") != "body,message" || got.At.IsZero() || got.Reason == "" || got.Bytes == 0 {
		t.Errorf("quarantine entry of %s: %+v", id, got)
	}

	// Without the old key nothing opens; an unknown ID is reported.
	res, err := s.RestoreQuarantined([]string{id, "nonexistent"})
	if err != nil || len(res) != 2 || res[0].Restored || res[1].Restored || !strings.Contains(res[1].Error, "not in quarantine") {
		t.Fatalf("restore without the old key = %+v, %v", res, err)
	}

	res, err = s.RestoreQuarantined(nil, oldKey)
	if err != nil || len(res) != 2 {
		t.Fatalf("restore all with the old key = %+v, %v", res, err)
	}
	for _, r := range res {
		if r.Restored != (r.ID == id) {
			t.Errorf("restore result %+v", r)
		}
	}
	m, err := s.Get(id)
	if err != nil || m.Events[len(m.Events)-1].Kind != "restored" {
		t.Fatalf("restored message: %+v, %v", m, err)
	}
	if body, err := s.Body(id); err != nil || string(body) != "the only copy" {
		t.Errorf("restored body %q, %v", body, err)
	}
	due, _ := s.Pending()
	if len(due) != 2 {
		t.Errorf("Pending after restore = %+v, want 2 messages", due)
	}
	if q, _ := s.Quarantined(); len(q) != 1 || q[0].ID != garbage {
		t.Errorf("quarantine after restore: %+v", q)
	}
	if st, _ := s.Stats(); st.Quarantined != 2 {
		t.Errorf("Stats.Quarantined = %d, want 2 (the garbage message and its body)", st.Quarantined)
	}
}

// A key that cannot be a spool key is an error of the call, not of a message.
func TestRestoreWithBadKey(t *testing.T) {
	s := openTest(t, Options{})
	if _, err := s.RestoreQuarantined(nil, []byte("short")); err == nil {
		t.Error("a 5-byte key was accepted")
	}
	if _, err := ReadKeyFile(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadKeyFile(missing) = %v", err)
	}
}
