package queue

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// spoolWithMessage leaves a closed spool holding one message, as a
// stopped server would, and returns its options and the message ID.
func spoolWithMessage(t *testing.T) (Options, string) {
	t.Helper()
	dir := t.TempDir()
	opts := Options{Path: filepath.Join(dir, "spool.db"), KeyFile: filepath.Join(dir, "spool.key")}
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	id := enqueue(t, s, "a@o.test", "the only copy", "x@d.test")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return opts, id
}

// assertStillThere opens the spool with opts and finds id with its body.
func assertStillThere(t *testing.T, opts Options, id string) {
	t.Helper()
	s, err := Open(opts)
	if err != nil {
		t.Fatalf("open with the right key: %v", err)
	}
	defer s.Close()
	if body, err := s.Body(id); err != nil || string(body) != "the only copy" {
		t.Errorf("message %s after the refusal: %q, %v", id, body, err)
	}
	if st, _ := s.Stats(); st.Quarantined != 0 {
		t.Errorf("%d records quarantined", st.Quarantined)
	}
}

func TestMissingKeyWithExistingSpoolIsRefused(t *testing.T) {
	opts, id := spoolWithMessage(t)
	key, err := os.ReadFile(opts.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(opts.KeyFile)

	_, err = Open(opts)
	if !errors.Is(err, ErrKeyMissing) || !strings.Contains(err.Error(), opts.KeyFile) {
		t.Fatalf("Open without the key = %v, want ErrKeyMissing naming %s", err, opts.KeyFile)
	}
	if _, err := os.Stat(opts.KeyFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a key file was created for a spool that holds records: %v", err)
	}
	if err := os.WriteFile(opts.KeyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	assertStillThere(t, opts, id)
}

func TestWrongKeyIsRefused(t *testing.T) {
	opts, id := spoolWithMessage(t)
	other, _ := spoolWithMessage(t)
	wrong := opts
	wrong.KeyFile = other.KeyFile

	_, err := Open(wrong)
	if !errors.Is(err, ErrWrongKey) || !strings.Contains(err.Error(), other.KeyFile) {
		t.Fatalf("Open with another spool's key = %v, want ErrWrongKey naming %s", err, other.KeyFile)
	}
	assertStillThere(t, opts, id)
}

// A spool written before the key-check record existed is judged by its
// records: the right key opens them (and the spool gets its check), a
// wrong one opens none.
func TestSpoolWithoutKeyCheckIsJudgedByItsRecords(t *testing.T) {
	opts, id := spoolWithMessage(t)
	other, _ := spoolWithMessage(t)
	dropKeyCheck := func() {
		db, err := bolt.Open(opts.Path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyCheckName) }); err != nil {
			t.Fatal(err)
		}
	}
	dropKeyCheck()
	wrong := opts
	wrong.KeyFile = other.KeyFile
	if _, err := Open(wrong); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("Open of a spool without key check, wrong key = %v, want ErrWrongKey", err)
	}
	assertStillThere(t, opts, id)
	// The right key has written the check: the wrong key is now refused
	// by it, whatever the records.
	if _, err := Open(wrong); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("Open with the wrong key after the check was written = %v", err)
	}
}

// A spool that holds no record loses nothing to a new key.
func TestMissingKeyOfEmptySpoolIsCreated(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Path: filepath.Join(dir, "spool.db"), KeyFile: filepath.Join(dir, "spool.key")}
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	first, _ := os.ReadFile(opts.KeyFile)
	os.Remove(opts.KeyFile)
	s, err = Open(opts)
	if err != nil {
		t.Fatalf("Open of an empty spool without key: %v", err)
	}
	enqueue(t, s, "a@o.test", "b", "x@d.test")
	s.Close()
	second, _ := os.ReadFile(opts.KeyFile)
	if len(second) != keySize || bytes.Equal(first, second) {
		t.Fatalf("no new key was created")
	}
	s, err = Open(opts)
	if err != nil {
		t.Fatalf("reopen with the new key: %v", err)
	}
	s.Close()
}
