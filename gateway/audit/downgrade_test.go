package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sealgate/sealgate/queue"
)

// Deleting every checkpoint this sealgate signed (v3), back to one an
// older sealgate signed before the upgrade (v2), and putting back the
// newest-checkpoint record of that time (sealed, so copied from a backup),
// must not leave a long unsigned tail unjudged.
func TestStrippingNewCheckpointsDoesNotHideTheTail(t *testing.T) {
	now := time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	opts := queue.Options{Path: filepath.Join(dir, "spool.db"), KeyFile: filepath.Join(dir, "spool.key"),
		Now: func() time.Time { return now }, Audit: FromChange}
	s, err := queue.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := s.Enqueue(context.Background(), queue.Envelope{From: "a@org.test", Recipients: []string{"b@dest.test"}}, []byte("Subject: s\r\n\r\nb\r\n")); err != nil {
		t.Fatal(err)
	}
	seq, hash, _ := s.AuditHead()
	cp := Checkpoint{Seq: seq, Hash: hash, Time: now, Key: hex.EncodeToString(key.Public().(ed25519.PublicKey))}
	cp.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(key, cp.signedBytes()))
	data, _ := json.Marshal(cp)
	if err := s.PutAuditCheckpoint(seq, data); err != nil {
		t.Fatal(err)
	}
	v2seq := seq
	s.Close()
	var oldPointer []byte // a backup of the time
	db, _ := bolt.Open(opts.Path, 0o600, nil)
	db.View(func(tx *bolt.Tx) error {
		oldPointer = append([]byte(nil), tx.Bucket([]byte("meta")).Get([]byte("audit-last-checkpoint"))...)
		return nil
	})
	db.Close()

	// Upgraded: signs at start, then every interval for ten hours.
	s, _ = queue.Open(opts)
	tr := New(s, key, nil)
	now = now.Add(time.Hour)
	if _, _, err := tr.SignHead(now, 0); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		now = now.Add(5 * time.Minute)
		s.Audit(Admin(now, "hold", "api", "", "held"))
		if _, err := tr.Checkpoint(now); err != nil {
			t.Fatal(err)
		}
		now = now.Add(55 * time.Minute)
	}
	if rep, _ := tr.Verify(); !rep.OK() {
		t.Fatalf("genuine: %s", rep.Problem)
	}
	s.Close()

	db, _ = bolt.Open(opts.Path, 0o600, nil)
	db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("audit-checkpoints"))
		var del [][]byte
		b.ForEach(func(k, _ []byte) error {
			if binary.BigEndian.Uint64(k) > v2seq {
				del = append(del, append([]byte(nil), k...))
			}
			return nil
		})
		for _, k := range del {
			b.Delete(k)
		}
		return tx.Bucket([]byte("meta")).Put([]byte("audit-last-checkpoint"), oldPointer)
	})
	db.Close()
	s, _ = queue.Open(opts)
	defer s.Close()
	rep, err := New(s, key, nil).Verify()
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() {
		t.Errorf("ten hours of entries after the v3 checkpoints were deleted: verify says intact (%d unsigned)", rep.Unsigned)
	}
	// Nor does the next start sign it away unrecorded.
	if _, problem, err := New(s, key, nil).SignHead(now, 0); err != nil || problem == "" {
		t.Errorf("signing at the next start: %q, %v; want the unsigned tail on record", problem, err)
	}
}
