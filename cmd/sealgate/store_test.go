package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/gateway/audit"
	"github.com/sealgate/sealgate/internal/testutil"
	"github.com/sealgate/sealgate/pgstore"
	"github.com/sealgate/sealgate/queue"
)

// TestStoreMigrate: a stopped node's TLS history, API keys and key
// records reach the shared store; running it again changes nothing and
// keeps a revocation made meanwhile; with the node stopped, the CLI reads
// the fleet's history from the shared store.
func TestStoreMigrate(t *testing.T) {
	dir := t.TempDir()
	dsn := testutil.PostgreSQL(t)
	cfgPath := filepath.Join(dir, "sealgate.yaml")
	writeFile(t, cfgPath, fmt.Sprintf("data_dir: %s\nstore:\n  postgres:\n    dsn: %q\n", filepath.Join(dir, "data"), dsn))

	code, _, errOut := sealgate(t, "store", "migrate", "--config", filepath.Join(dir, "missing.yaml"))
	if code == 0 {
		t.Errorf("migrate with a missing config succeeded: %s", errOut)
	}

	local, err := queue.Open(queue.Options{Path: filepath.Join(dir, "data", "spool.db"), KeyFile: filepath.Join(dir, "data", "spool.key"),
		Audit: audit.FromChange})
	if err != nil {
		t.Fatal(err)
	}
	auditKey, err := audit.LoadOrCreateKey(filepath.Join(dir, "data", "audit-signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := local.Enqueue(context.Background(), queue.Envelope{From: "dr.lee@clinic.test", Recipients: []string{"patient@partner.test"},
		MessageID: "<m1@clinic.test>"}, []byte("Subject: x\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.New(local, auditKey, nil).Checkpoint(time.Now()); err != nil {
		t.Fatal(err)
	}
	local.ObserveTLS(queue.TLSObservation{Domain: "partner.test", Connected: true, TLSVersion: "TLS1.3", Verified: true})
	created := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	if err := local.PutAPIKey(queue.APIKey{ID: "k1", Name: "ehr", Scope: "send", Hash: []byte{9}, Created: created}); err != nil {
		t.Fatal(err)
	}
	if err := local.PutKeyRecord("bob@partner.test\x00ABCD", []byte("key material")); err != nil {
		t.Fatal(err)
	}
	local.RecordTLSSession(queue.TLSSession{Day: "2026-11-28", Domain: "partner.test", PolicyType: "sts", OK: true})
	escrowKey := filepath.Join(dir, "data", "escrow.key")
	esc, err := local.OpenEscrow(queue.EscrowOptions{KeyFile: escrowKey})
	if err != nil {
		t.Fatal(err)
	}
	_, token, err := esc.Deposit(queue.EscrowDeposit{QueueID: "q1", EnvelopeFrom: "alice@org.test", Recipient: "bob@partner.test"},
		[]byte("Subject: results\r\n\r\nhaemoglobin 13.2\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	local.Close()

	code, out, errOut := sealgate(t, "store", "migrate", "--config", cfgPath)
	for _, want := range []string{"TLS history: 1 domains merged", "API keys: 1 copied, 0 already there", "correspondents' keys: 1 records copied, 0 already there",
		"escrow store: 1 messages copied", "TLS report aggregates: 1 moved", "audit trail: 1 entries shipped to the fleet's trail"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("store migrate: exit %d, lacks %q:\n%s%s", code, want, out, errOut)
		}
	}
	shared, err := pgstore.Open(context.Background(), pgstore.Options{DSN: dsn, KeyFile: filepath.Join(dir, "data", "fleet.key")})
	if err != nil {
		t.Fatal(err)
	}
	defer shared.Close()
	if d, err := shared.DomainInfo("partner.test"); err != nil || d == nil || !d.TLSSeen || !d.Verified {
		t.Fatalf("shared history: %+v, %v", d, err)
	}
	var recs []string
	shared.ForEachKeyRecord("bob@partner.test\x00", func(id string, data []byte) error {
		recs = append(recs, id+"="+string(data))
		return nil
	})
	if len(recs) != 1 || recs[0] != "bob@partner.test\x00ABCD=key material" {
		t.Fatalf("shared key records: %q", recs)
	}

	// Another node of the fleet, with the fleet's escrow key, opens the
	// message escrowed here.
	other, err := queue.Open(queue.Options{Path: filepath.Join(t.TempDir(), "spool.db"), KeyFile: filepath.Join(t.TempDir(), "spool.key")})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	other.UseShared(shared)
	otherEscrow, err := other.OpenEscrow(queue.EscrowOptions{KeyFile: escrowKey})
	if err != nil {
		t.Fatal(err)
	}
	if body, err := otherEscrow.Content(token); err != nil || !strings.Contains(string(body), "haemoglobin 13.2") {
		t.Fatalf("the migrated escrowed message on another node: %q, %v", body, err)
	}

	// Meanwhile the fleet revokes the escrowed message, removes the key,
	// revokes the API key and learns another domain.
	en, err := otherEscrow.Lookup(token)
	if err != nil {
		t.Fatal(err)
	}
	if err := otherEscrow.Revoke(en.Message.ID, "admin"); err != nil {
		t.Fatal(err)
	}
	if err := shared.DeleteKeyRecords([]string{"bob@partner.test\x00ABCD"}); err != nil {
		t.Fatal(err)
	}
	if err := shared.RevokeAPIKey("k1", created.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	shared.ObserveTLS(queue.TLSObservation{Domain: "fleet-only.test", Connected: true, TLSVersion: "TLS1.2"})
	code, out, errOut = sealgate(t, "store", "migrate", "--config", cfgPath)
	if code != 0 || !strings.Contains(out, "API keys: 0 copied, 1 already there") {
		t.Fatalf("second migrate: exit %d\n%s%s", code, out, errOut)
	}
	if _, err := otherEscrow.Content(token); err == nil {
		t.Error("a second migrate brought a revoked escrowed message back")
	}
	recs = nil
	shared.ForEachKeyRecord("bob@partner.test\x00", func(id string, _ []byte) error { recs = append(recs, id); return nil })
	if len(recs) != 0 || !strings.Contains(out, "copied on ") {
		t.Errorf("a second migrate brought a removed key back (%q):\n%s", recs, out)
	}
	if !strings.Contains(out, "TLS report aggregates: 0 moved") {
		t.Errorf("a second migrate moved aggregates again:\n%s", out)
	}
	if due, _ := shared.TLSRPTBefore("2026-11-29"); len(due) != 1 || due[0].Successes != 1 {
		t.Errorf("the fleet's aggregates after two migrations: %+v", due)
	}
	if k, err := shared.APIKeyByID("k1"); err != nil || k.Revoked.IsZero() {
		t.Errorf("a second migrate undid the fleet's revocation: %+v, %v", k, err)
	}
	if d, _ := shared.DomainInfo("partner.test"); d == nil || !d.Verified {
		t.Errorf("a second migrate lowered the history: %+v", d)
	}

	// The audit chain still verifies, here and in the fleet's trail.
	code, out, _ = sealgate(t, "audit", "verify", "--config", cfgPath)
	if code != 0 || !strings.Contains(out, "this node: intact: 1 entries") || !strings.Contains(out, "fleet: 1 nodes") {
		t.Errorf("audit verify after migrate: exit %d\n%s", code, out)
	}

	// The CLI on the stopped node reads the fleet's history.
	code, out, _ = sealgate(t, "domains", "list", "--config", cfgPath)
	if code != 0 || !strings.Contains(out, "fleet-only.test") || !strings.Contains(out, "partner.test") {
		t.Errorf("domains list on a fleet node: exit %d\n%s", code, out)
	}
}
