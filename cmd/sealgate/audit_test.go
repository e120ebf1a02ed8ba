package main

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sealgate/sealgate/gateway/audit"
	"github.com/sealgate/sealgate/internal/testutil"
	"github.com/sealgate/sealgate/pgstore"
	"github.com/sealgate/sealgate/queue"
)

// TestAuditCommandsOnStoppedServer: search answers how a message left,
// per recipient, in text, JSON and CSV; export carries the hashes and
// the checkpoint; verify says intact, then names the entry edited in the
// file (exit 1); the admin actions done here are on record with who.
func TestAuditCommandsOnStoppedServer(t *testing.T) {
	dir, data, cfg, key := stoppedNodeWithAuditKey(t)
	store, err := queue.Open(queue.Options{Path: filepath.Join(data, "spool.db"), KeyFile: filepath.Join(data, "spool.key"), Audit: audit.FromChange})
	if err != nil {
		t.Fatal(err)
	}
	id, err := store.Enqueue(context.Background(), queue.Envelope{From: "dr.lee@clinic.test", Recipients: []string{"patient@mail.test"},
		MessageID: "<results-7@clinic.test>", ClientAddr: "40.92.1.1:5000", TLS: "TLS1.3 TLS_AES_128_GCM_SHA256",
		Decisions: []queue.RcptDecision{{Chain: []string{"tls-verified", "bounce"}, By: "tag [secure]"}}}, []byte("Subject: x\r\n\r\nx\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	att := queue.Attempt{Destination: "mail.test", MXHost: "mx.mail.test", IP: "192.0.2.9", TLSVersion: "TLS1.3", Cipher: "TLS_AES_256_GCM_SHA384",
		CertVerified: true, TLSLevel: "verify", Reply: "250 2.0.0 Ok: queued as ABC123", Recipients: []string{"patient@mail.test"}}
	if _, _, err := store.RecordAttempt(id, att, []queue.RcptOutcome{{Address: "patient@mail.test", Delivered: true, Code: 250}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.New(store, key, nil).Checkpoint(time.Now()); err != nil {
		t.Fatal(err)
	}
	store.Close()

	code, out, stderr := sealgate(t, "audit", "search", "--recipient", "patient@mail.test", "--config", cfg)
	for _, want := range []string{"received  " + id + "  <results-7@clinic.test>", "patient@mail.test: chain [tls-verified, bounce] by tag [secure]",
		"to mail.test via mx.mail.test [192.0.2.9], TLS1.3 TLS_AES_256_GCM_SHA384, certificate verified", "reply: 250 2.0.0 Ok: queued as ABC123",
		"patient@mail.test  delivered  by tls-verified", "3 records"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("audit search lacks %q: exit %d\n%s%s", want, code, out, stderr)
		}
	}
	code, out, _ = sealgate(t, "audit", "search", "--message-id", "results-7@clinic.test", "--type", "attempt", "--json", "--config", cfg)
	var found []audit.Found
	if err := json.Unmarshal([]byte(out), &found); code != 0 || err != nil || len(found) != 1 || !found[0].Attempt.CertVerified {
		t.Errorf("audit search --json: exit %d %v\n%s", code, err, out)
	}
	if code, out, _ := sealgate(t, "audit", "search", "--sender", "dr.lee@clinic.test", "--csv", "--config", cfg); code != 0 ||
		!strings.HasPrefix(out, "seq,time,type,queue_id") || !strings.Contains(out, ",attempt,"+id+",") || !strings.Contains(out, "250 2.0.0 Ok: queued as ABC123") {
		t.Errorf("audit search --csv: exit %d\n%s", code, out)
	}
	code, out, _ = sealgate(t, "audit", "export", "--config", cfg)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 4 || !strings.Contains(lines[0], `"hash":`) || !strings.HasPrefix(lines[3], `{"checkpoint":`) {
		t.Errorf("audit export: exit %d\n%s", code, out)
	}
	if code, out, _ := sealgate(t, "audit", "key", "--config", cfg); code != 0 || !strings.HasPrefix(out, "ed25519 ") || len(strings.TrimSpace(out)) != 8+64 {
		t.Errorf("audit key: exit %d %q", code, out)
	}
	if code, out, _ := sealgate(t, "audit", "verify", "--config", cfg); code != 0 || !strings.HasPrefix(out, "intact: 3 entries (1 to 3), 1 signed checkpoints") {
		t.Errorf("audit verify: exit %d\n%s", code, out)
	}

	// An admin action on the stopped spool is on record, with who.
	if code, _, stderr := sealgate(t, "queue", "delete", id, "--config", cfg); code != 0 {
		t.Fatalf("queue delete: %s", stderr)
	}
	pub, _, fp := writeKey(t, dir, "patient@mail.test")
	if code, _, stderr := sealgate(t, "keys", "import", pub, "--config", cfg); code != 0 {
		t.Fatalf("keys import: %s", stderr)
	}
	code, out, _ = sealgate(t, "audit", "search", "--type", "admin", "--config", cfg)
	if code != 0 || !strings.Contains(out, "admin.delete "+id) || !strings.Contains(out, "by sealgate CLI on the spool file as ") ||
		!strings.Contains(out, "admin.key-import") || !strings.Contains(out, "openpgp key "+fp+" for patient@mail.test") {
		t.Errorf("the admin actions: exit %d\n%s", code, out)
	}

	// Edited in the file: verify names the entry and exits 1.
	db, err := bolt.Open(filepath.Join(data, "spool.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		k := make([]byte, 8)
		binary.BigEndian.PutUint64(k, 2)
		b := tx.Bucket([]byte("audit"))
		v := append([]byte(nil), b.Get(k)...)
		v[20] ^= 0x40
		return b.Put(k, v)
	})
	db.Close()
	code, out, stderr = sealgate(t, "audit", "verify", "--config", cfg)
	if code != 1 || !strings.Contains(out, "NOT INTACT") || !strings.Contains(stderr, "entry 2 does not open") {
		t.Errorf("audit verify of an edited trail: exit %d\n%s%s", code, out, stderr)
	}
}

// TestAPIKeyCommands: create prints the credential once, list shows the
// key and never a secret, revoke ends it; a bad scope is a usage error;
// each change is on the audit trail.
func TestAPIKeyCommands(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sealgate.yaml")
	writeFile(t, cfg, "data_dir: "+filepath.Join(dir, "data")+"\n")
	seedSpool(t, filepath.Join(dir, "data"))
	code, out, stderr := sealgate(t, "api", "key", "create", "--name", "ehr", "--scope", "send", "--domains", "clinic.test", "--config", cfg)
	id, secret, ok := strings.Cut(strings.TrimSpace(out), ":")
	if code != 0 || !ok || !strings.HasPrefix(id, "sk") || len(secret) < 40 || !strings.Contains(stderr, "shown only now") {
		t.Fatalf("api key create: exit %d %q %s", code, out, stderr)
	}
	code, out, _ = sealgate(t, "api", "key", "list", "--config", cfg)
	if code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "ehr") || !strings.Contains(out, "send") || strings.Contains(out, secret) {
		t.Errorf("api key list: exit %d\n%s", code, out)
	}
	if code, _, stderr := sealgate(t, "api", "key", "create", "--name", "x", "--scope", "root", "--config", cfg); code != 2 || !strings.Contains(stderr, "read, send or admin") {
		t.Errorf("a bad scope: exit %d %s", code, stderr)
	}
	// A key with its own limits: list shows them, and the node's for a
	// key without.
	code, out, stderr = sealgate(t, "api", "key", "create", "--name", "reminders", "--scope", "send", "--domains", "clinic.test",
		"--rate-per-minute", "120", "--max-message-bytes", "2000000", "--config", cfg)
	limited, _, _ := strings.Cut(strings.TrimSpace(out), ":")
	if code != 0 || !strings.Contains(stderr, "120 messages a minute, 2000000 bytes a message") {
		t.Fatalf("api key create with limits: exit %d %s", code, stderr)
	}
	code, out, _ = sealgate(t, "api", "key", "list", "--config", cfg)
	rows := map[string][]string{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			rows[f[0]] = f
		}
	}
	if code != 0 || strings.Join(rows["ID"][:6], " ") != "ID NAME SCOPE RATE/MIN MAX BYTES" ||
		strings.Join(rows[limited][2:5], " ") != "send 120 2000000" || strings.Join(rows[id][2:5], " ") != "send default default" {
		t.Errorf("api key list with limits: exit %d\n%s", code, out)
	}
	code, out, _ = sealgate(t, "api", "key", "list", "--json", "--config", cfg)
	if code != 0 || !strings.Contains(out, `"rate_per_minute": 120`) || !strings.Contains(out, `"max_message_bytes": 2000000`) {
		t.Errorf("api key list --json with limits: %s", out)
	}
	if code, _, stderr := sealgate(t, "api", "key", "create", "--name", "x", "--scope", "send", "--domains", "clinic.test", "--rate-per-minute", "-1", "--config", cfg); code != 2 {
		t.Errorf("a negative rate: exit %d %s", code, stderr)
	}
	if code, out, _ := sealgate(t, "api", "key", "revoke", id, "--config", cfg); code != 0 || !strings.Contains(out, id+" revoked") {
		t.Errorf("api key revoke: exit %d %s", code, out)
	}
	if code, _, stderr := sealgate(t, "api", "key", "revoke", "sk-none", "--config", cfg); code != 1 || !strings.Contains(stderr, "no such API key sk-none") {
		t.Errorf("revoke of an unknown key: exit %d %s", code, stderr)
	}
	code, out, _ = sealgate(t, "api", "key", "list", "--json", "--config", cfg)
	if code != 0 || !strings.Contains(out, `"revoked": "`) {
		t.Errorf("the revoked key in the list: %s", out)
	}
}

// TestAuditCommandsInAFleet: on a fleet's node, audit verify checks this
// node's chain and every chain in the shared store, and audit search
// answers from the fleet's trail, naming the node (--local: this node).
func TestAuditCommandsInAFleet(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	dsn := testutil.PostgreSQL(t)
	cfg := filepath.Join(dir, "sealgate.yaml")
	writeFile(t, cfg, fmt.Sprintf("data_dir: %s\nhostname: mx-a.clinic.test\nstore:\n  postgres:\n    dsn: %q\n", data, dsn))
	seedSpool(t, data)
	key, err := audit.LoadOrCreateKey(filepath.Join(data, "audit-signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	store, err := queue.Open(queue.Options{Path: filepath.Join(data, "spool.db"), KeyFile: filepath.Join(data, "spool.key"), Audit: audit.FromChange})
	if err != nil {
		t.Fatal(err)
	}
	id, err := store.Enqueue(context.Background(), queue.Envelope{From: "dr.lee@clinic.test", Recipients: []string{"patient@mail.test"},
		MessageID: "<results-8@clinic.test>"}, []byte("Subject: x\r\n\r\nx\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	trail := audit.New(store, key, nil)
	if _, err := trail.Checkpoint(time.Now()); err != nil {
		t.Fatal(err)
	}
	shared, err := pgstore.Open(context.Background(), pgstore.Options{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := trail.Ship(shared, "mx-a.clinic.test"); err != nil {
		t.Fatal(err)
	}
	if err := trail.SignFleet(shared, time.Now()); err != nil {
		t.Fatal(err)
	}
	shared.Close()
	store.Close()

	code, out, stderr := sealgate(t, "audit", "verify", "--config", cfg)
	for _, want := range []string{"this node: intact", "fleet: 1 nodes, 1 fleet checkpoints", "mx-a.clinic.test (node ", "fleet checkpoints: intact"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("audit verify in a fleet lacks %q: exit %d\n%s%s", want, code, out, stderr)
		}
	}
	code, out, _ = sealgate(t, "audit", "search", "--queue-id", id, "--config", cfg)
	if code != 0 || !strings.Contains(out, id+"  on mx-a.clinic.test  <results-8@clinic.test>") {
		t.Errorf("audit search in a fleet: exit %d\n%s", code, out)
	}
	code, out, _ = sealgate(t, "audit", "search", "--queue-id", id, "--local", "--config", cfg)
	if code != 0 || strings.Contains(out, " on mx-a") || !strings.Contains(out, id) {
		t.Errorf("audit search --local: exit %d\n%s", code, out)
	}
}

// TestAuditVerifyFindsDeletedCheckpoints: with the spool key and the
// file, an attacker can rewrite entries and re-chain them, so the
// checkpoints are what binds them; deleting them all (or the whole
// trail) must not leave a trail that verifies. A long tail no
// checkpoint covers is named, audit verify itself never signs it away,
// and a later signer puts it on record in the chain. A checkpoint signed
// by a replaced key fails against the public key kept elsewhere.
func TestAuditVerifyFindsDeletedCheckpoints(t *testing.T) {
	dir, data, cfg, key := stoppedNodeWithAuditKey(t)
	now := time.Now().Add(-2 * time.Hour)
	store, err := queue.Open(queue.Options{Path: filepath.Join(data, "spool.db"), KeyFile: filepath.Join(data, "spool.key"), Audit: audit.FromChange,
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	id, err := store.Enqueue(context.Background(), queue.Envelope{From: "dr.lee@clinic.test", Recipients: []string{"patient@mail.test", "other@mail.test"}},
		[]byte("Subject: x\r\n\r\nx\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Hour) // a day's traffic later: each checkpoint on time
	if _, err := audit.New(store, key, nil).Checkpoint(now); err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.RecordAttempt(id, queue.Attempt{Destination: "mail.test"}, []queue.RcptOutcome{{Address: "patient@mail.test", Delivered: true, Code: 250}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.New(store, key, nil).Checkpoint(now); err != nil {
		t.Fatal(err)
	}
	store.Close()

	_, keyOut, _ := sealgate(t, "audit", "key", "--config", cfg)
	held := filepath.Join(dir, "audit-key.txt")
	writeFile(t, held, keyOut)
	if code, out, stderr := sealgate(t, "audit", "verify", "--public-key", held, "--config", cfg); code != 0 || !strings.HasPrefix(out, "intact:") {
		t.Fatalf("audit verify of a genuine trail with the key held elsewhere: exit %d\n%s%s", code, out, stderr)
	}
	other, err := audit.LoadOrCreateKey(filepath.Join(dir, "other.key"))
	if err != nil {
		t.Fatal(err)
	}
	otherHex := fmt.Sprintf("%x", other.Public())
	if code, out, _ := sealgate(t, "audit", "verify", "--public-key", otherHex, "--config", cfg); code != 1 || !strings.Contains(out, "the signing key was replaced") {
		t.Errorf("audit verify against another key: exit %d\n%s", code, out)
	}

	// Every checkpoint deleted, as a plain bbolt user can.
	editSpool(t, data, func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket([]byte("audit-checkpoints")); err != nil {
			return err
		}
		return tx.Bucket([]byte("meta")).Delete([]byte("audit-last-checkpoint"))
	})
	for range 2 { // verify must not sign the tail away
		code, out, _ := sealgate(t, "audit", "verify", "--config", cfg)
		if code != 1 || !strings.Contains(out, "covered by no signed checkpoint") {
			t.Fatalf("audit verify with the checkpoints deleted: exit %d\n%s", code, out)
		}
	}
	// An admin action on the stopped spool signs its change, and puts
	// what it found on record first.
	if code, _, stderr := sealgate(t, "queue", "hold", id, "--config", cfg); code != 0 {
		t.Fatalf("queue hold: %s", stderr)
	}
	// The change itself is on the trail at once, under its own time (not
	// chained later by the server, under a time days old).
	if code, out, _ := sealgate(t, "audit", "search", "--type", "held", "--queue-id", id, "--config", cfg); code != 0 || !strings.Contains(out, "held") || !strings.Contains(out, "1 records") {
		t.Errorf("the hold on the stopped spool in the trail: exit %d\n%s", code, out)
	}
	code, out, _ := sealgate(t, "audit", "verify", "--config", cfg)
	if code != 1 || !strings.Contains(out, "on signing, sealgate found that entries 1 to") {
		t.Errorf("audit verify after a signer found the unsigned tail: exit %d\n%s", code, out)
	}

	// The whole trail deleted: the spool's messages say it existed.
	editSpool(t, data, func(tx *bolt.Tx) error {
		for _, b := range []string{"audit", "audit-checkpoints"} {
			if err := tx.DeleteBucket([]byte(b)); err != nil {
				return err
			}
		}
		meta := tx.Bucket([]byte("meta"))
		for _, k := range []string{"audit-head", "audit-last-checkpoint"} {
			if err := meta.Delete([]byte(k)); err != nil {
				return err
			}
		}
		return nil
	})
	code, out, _ = sealgate(t, "audit", "verify", "--config", cfg)
	if code != 1 || !strings.Contains(out, "the trail is empty, but the spool holds messages") {
		t.Errorf("audit verify of a trail deleted whole: exit %d\n%s", code, out)
	}
}

// editSpool changes a stopped server's spool file as a plain bbolt user.
func editSpool(t *testing.T, data string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(data, "spool.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

// stoppedNodeWithAuditKey is a stopped node's directory, its data dir and
// config file, with a spool and the audit signing key it made.
func stoppedNodeWithAuditKey(t *testing.T) (dir, data, cfg string, key ed25519.PrivateKey) {
	t.Helper()
	dir = t.TempDir()
	data = filepath.Join(dir, "data")
	cfg = filepath.Join(dir, "sealgate.yaml")
	writeFile(t, cfg, "data_dir: "+data+"\n")
	seedSpool(t, data)
	key, err := audit.LoadOrCreateKey(filepath.Join(data, "audit-signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	return dir, data, cfg, key
}
