package audit

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sealgate/sealgate/internal/testutil"
	"github.com/sealgate/sealgate/pgstore"
	"github.com/sealgate/sealgate/queue"
)

// TestFleetCheckpointsAreChained: fleet checkpoints chain to the one
// before; one deleted from between is named, and so is a node's chain
// shipped and then edited, against the node's anchor.
func TestFleetCheckpointsAreChained(t *testing.T) {
	dsn := testutil.PostgreSQL(t)
	dir := t.TempDir()
	st, err := queue.Open(queue.Options{Path: filepath.Join(dir, "spool.db"), KeyFile: filepath.Join(dir, "spool.key"), Audit: FromChange})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	key, err := LoadOrCreateKey(filepath.Join(dir, "audit.key"))
	if err != nil {
		t.Fatal(err)
	}
	trail := New(st, key, nil)
	fleet, err := pgstore.Open(context.Background(), pgstore.Options{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Close()
	now := time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)
	for i := range 3 {
		if err := trail.Record(Admin(now, "test", "auditor", "", "step")); err != nil {
			t.Fatal(err)
		}
		if _, err := trail.Ship(fleet, "mx-a"); err != nil {
			t.Fatal(err)
		}
		if err := trail.SignFleet(fleet, now.Add(time.Duration(i)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	anchor, err := trail.Anchor()
	if err != nil || anchor.ShippedSeq != 3 || anchor.SignedID == 0 {
		t.Fatalf("anchor %+v, %v", anchor, err)
	}
	rep, err := VerifyFleet(fleet, anchor)
	if err != nil || !rep.OK() || rep.FleetCheckpoints != 3 {
		t.Fatalf("an intact fleet trail: %+v, %v", rep, err)
	}
	db, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	if _, err := db.Exec(context.Background(), "DELETE FROM audit_fleet_checkpoints WHERE id = (SELECT min(id) + 1 FROM audit_fleet_checkpoints)"); err != nil {
		t.Fatal(err)
	}
	rep, _ = VerifyFleet(fleet, anchor)
	if !strings.Contains(strings.Join(rep.Problems, "\n"), "does not follow the one before it") {
		t.Errorf("a fleet checkpoint deleted from between is not found: %q", rep.Problems)
	}
}
