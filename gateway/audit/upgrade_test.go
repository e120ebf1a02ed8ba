package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/queue"
)

// A trail kept by a sealgate that signed neither at start nor after a
// command on a stopped spool (its checkpoints name no interval, v2) is
// not judged by the length of its unsigned tail: admin commands run days
// apart while it was stopped are no sign of deleted checkpoints. Once
// this sealgate signs (v3), the rule holds.
func TestAnUpgradedTrailIsNotJudgedByItsOldTail(t *testing.T) {
	now := time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	s, err := queue.Open(queue.Options{Path: filepath.Join(dir, "spool.db"), KeyFile: filepath.Join(dir, "spool.key"),
		Now: func() time.Time { return now }, Audit: FromChange})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	tr := New(s, key, nil)
	if _, err := s.Enqueue(context.Background(), queue.Envelope{From: "a@org.test", Recipients: []string{"b@dest.test"}}, []byte("Subject: s\r\n\r\nb\r\n")); err != nil {
		t.Fatal(err)
	}
	// The old sealgate's checkpoint at its stop: no interval in it.
	seq, hash, err := s.AuditHead()
	if err != nil {
		t.Fatal(err)
	}
	cp := Checkpoint{Seq: seq, Hash: hash, Time: now, Key: hex.EncodeToString(key.Public().(ed25519.PublicKey))}
	cp.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(key, cp.signedBytes()))
	data, _ := json.Marshal(cp)
	if err := s.PutAuditCheckpoint(seq, data); err != nil {
		t.Fatal(err)
	}
	// Its CLI, days apart, on the stopped spool: entries nobody signed.
	for range 2 {
		now = now.Add(48 * time.Hour)
		if err := s.Audit(Admin(now, "hold", "cli", "", "held")); err != nil {
			t.Fatal(err)
		}
	}
	if rep, _ := tr.Verify(); !rep.OK() {
		t.Fatalf("verify of the upgraded trail: %s", rep.Problem)
	}
	if _, problem, err := tr.SignHead(now, 0); err != nil || problem != "" {
		t.Fatalf("the first start after the upgrade: %q, %v", problem, err)
	}
	// From here on this sealgate signs, and a long unsigned tail is named.
	for range 2 {
		now = now.Add(time.Hour)
		if err := s.Audit(Admin(now, "hold", "cli", "", "held")); err != nil {
			t.Fatal(err)
		}
	}
	if rep, _ := tr.Verify(); !strings.Contains(rep.Problem, "covered by no signed checkpoint") {
		t.Errorf("a long tail after this sealgate's checkpoint: %+v", rep)
	}
}
