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

// TestFleetTrailAgainstEveryNodesAnchor: whoever holds the database
// cannot remove a node with the fleet checkpoints that name it, nor
// fake a node's pruning, without a node that never led finding it.
func TestFleetTrailAgainstEveryNodesAnchor(t *testing.T) {
	dsn := testutil.PostgreSQL(t)
	fleet, err := pgstore.Open(context.Background(), pgstore.Options{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Close()
	now := time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)
	trails := map[string]*Trail{}
	for _, name := range []string{"mx-a", "mx-b", "mx-c"} {
		dir := t.TempDir()
		st, err := queue.Open(queue.Options{Path: filepath.Join(dir, "spool.db"), KeyFile: filepath.Join(dir, "spool.key")})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		key, err := LoadOrCreateKey(filepath.Join(dir, "audit.key"))
		if err != nil {
			t.Fatal(err)
		}
		trails[name] = New(st, key, nil)
		for range 3 {
			trails[name].Record(Admin(now, "test", "auditor", "", name))
		}
		if _, err := trails[name].Checkpoint(now); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"mx-a", "mx-b", "mx-c"} {
		if _, err := trails[name].Ship(fleet, name); err != nil {
			t.Fatal(err)
		}
	}
	if err := trails["mx-a"].SignFleet(fleet, now); err != nil { // mx-a leads
		t.Fatal(err)
	}
	for _, name := range []string{"mx-b", "mx-c"} { // they see it at their next shipping
		if _, err := trails[name].Ship(fleet, name); err != nil {
			t.Fatal(err)
		}
	}
	anchorB, err := trails["mx-b"].Anchor()
	if err != nil || anchorB.SeenID == 0 || anchorB.SignedID != 0 {
		t.Fatalf("mx-b's anchor %+v, %v", anchorB, err)
	}
	if rep, err := VerifyFleet(fleet, anchorB); err != nil || !rep.OK() {
		t.Fatalf("an intact fleet trail: %+v, %v", rep, err)
	}
	db, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := db.Exec(context.Background(), sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	nodeC := NodeID(trails["mx-c"].PublicKey())
	exec("DELETE FROM audit_nodes WHERE node = $1", nodeC)
	exec("DELETE FROM audit_fleet_checkpoints")
	rep, _ := VerifyFleet(fleet, anchorB)
	if !strings.Contains(strings.Join(rep.Problems, "\n"), "which mx-b saw, is missing (deleted)") {
		t.Errorf("mx-b, which never led, does not find mx-c and the fleet checkpoints removed: %q", rep.Problems)
	}
	if err := trails["mx-a"].SignFleet(fleet, now.Add(time.Minute)); err == nil || !strings.Contains(err.Error(), "missing from the shared store") {
		t.Errorf("the leader signed onto a rewritten history: %v", err)
	}

	// A faked pruning of mx-b: its base moved up, its entries deleted.
	nodeB := NodeID(trails["mx-b"].PublicKey())
	exec("UPDATE audit_nodes SET base_seq = 3, base_hash = (SELECT hash FROM audit_entries WHERE node = $1 AND seq = 3) WHERE node = $1", nodeB)
	exec("DELETE FROM audit_entries WHERE node = $1 AND seq <= 3", nodeB)
	rep, _ = VerifyFleet(fleet, anchorB)
	if !strings.Contains(strings.Join(rep.Problems, "\n"), "pruned its chain up to entry 3; it pruned up to 0") {
		t.Errorf("a faked pruning is not found: %q", rep.Problems)
	}
}
