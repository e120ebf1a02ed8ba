package admin

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testutil"
	"github.com/sealgate/sealgate/pgstore"
)

// Two nodes' send APIs sharing their counts through a fleet's store:
// once they have synced, a key's limit per minute holds for both
// together; a node's messages leave the others' count as they leave its
// window; each node still counts its own exactly between syncs.
func TestSendLimitHoldsAcrossSyncedNodes(t *testing.T) {
	dsn := testutil.PostgreSQL(t)
	keyFile := filepath.Join(t.TempDir(), "fleet.key")
	store := func() *pgstore.Store {
		s, err := pgstore.Open(context.Background(), pgstore.Options{DSN: dsn, KeyFile: keyFile})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	a, b := New(Options{Rates: store(), Node: "a"}), New(Options{Rates: store(), Node: "b"})
	now := time.Now()
	sync := func() {
		t.Helper()
		for _, n := range []*API{a, b, a} { // a publishes, b publishes and reads, a reads
			if err := n.SyncRates(now); err != nil {
				t.Fatal(err)
			}
		}
	}
	take := func(n *API) bool {
		ok, _ := n.sendRate.take("sk1", 1, 3, now)
		return ok
	}
	if !take(a) || !take(a) {
		t.Fatal("node a refused its first two")
	}
	sync()
	if !take(b) {
		t.Fatal("node b refused the third")
	}
	if ok, wait := b.sendRate.take("sk1", 1, 3, now); ok || wait <= 0 || wait > time.Minute {
		t.Errorf("node b took a fourth (or refused with a wait of %s): it counts alone", wait)
	}
	sync()
	if take(a) {
		t.Error("node a took a fourth after syncing")
	}
	now = now.Add(61 * time.Second) // a minute on: the window is empty
	sync()
	if !take(b) || !take(a) {
		t.Error("refused after the window moved on")
	}
}

type flakyRates struct {
	others map[string]int
	down   bool
}

func (f *flakyRates) SyncRates(node string, mine map[string]int) (map[string]int, error) {
	if f.down {
		return nil, errors.New("database unreachable")
	}
	return f.others, nil
}

// The other nodes' counts are of the last minute: while the store does
// not answer they hold for a minute, and then this node counts alone.
func TestOthersCountsAgeOutWhileTheStoreIsDown(t *testing.T) {
	st := &flakyRates{others: map[string]int{"sk1": 3}}
	a := New(Options{Rates: st, Node: "a"})
	now := time.Now()
	if err := a.SyncRates(now); err != nil {
		t.Fatal(err)
	}
	st.down = true
	if ok, _ := a.sendRate.take("sk1", 1, 3, now.Add(30*time.Second)); ok {
		t.Error("half a minute into an outage the others' last counts no longer hold")
	}
	for i := range 600 { // ten minutes of failed syncs
		a.SyncRates(now.Add(time.Duration(i) * time.Second))
	}
	later := now.Add(10 * time.Minute)
	if ok, wait := a.sendRate.take("sk1", 1, 3, later); !ok {
		t.Errorf("ten minutes into an outage key sk1 is still refused (Retry-After %s) on counts from before it", wait)
	}
}
