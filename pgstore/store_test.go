package pgstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testutil"
	"github.com/sealgate/sealgate/queue"
)

// fleetKeys holds one fleet key file per database, shared by the
// stores ("nodes") a test opens on it.
var fleetKeys sync.Map

func open(t *testing.T, dsn string, now func() time.Time) *Store {
	t.Helper()
	key, _ := fleetKeys.LoadOrStore(dsn, filepath.Join(t.TempDir(), "fleet.key"))
	s, err := Open(context.Background(), Options{DSN: dsn, Now: now, KeyFile: key.(string)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// TestMigrationsOnceAndNoNewerSchema: nodes starting together apply each
// migration once; a node refuses a schema newer than it knows, and says
// so.
func TestMigrationsOnceAndNoNewerSchema(t *testing.T) {
	dsn := testutil.PostgreSQL(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(context.Background(), Options{DSN: dsn})
			if err == nil {
				s.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	s := open(t, dsn, nil)
	var n, max int
	if err := s.pool.QueryRow(context.Background(), "SELECT count(*), max(version) FROM sealgate_schema").Scan(&n, &max); err != nil {
		t.Fatal(err)
	}
	if n != SchemaVersion() || max != SchemaVersion() {
		t.Fatalf("%d migrations recorded (newest %d), want each of %d once", n, max, SchemaVersion())
	}
	if _, err := s.pool.Exec(context.Background(), "INSERT INTO sealgate_schema (version, name) VALUES ($1, 'from a newer sealgate')", SchemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), Options{DSN: dsn})
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("Open on a newer schema: %v, want ErrSchemaTooNew", err)
	}
	t.Log(err)
}

// TestTLSHistoryMatchesTheSpool: the same observations give the same
// record in the shared store as in the spool's own history (the two
// implementations mean the same thing), reset included.
func TestTLSHistoryMatchesTheSpool(t *testing.T) {
	clock := time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC)
	now := func() time.Time { return clock }
	pg := open(t, testutil.PostgreSQL(t), now)
	dir := t.TempDir()
	bolt, err := queue.Open(queue.Options{Path: filepath.Join(dir, "spool.db"), KeyFile: filepath.Join(dir, "spool.key"), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	defer bolt.Close()
	steps := []queue.TLSObservation{
		{Domain: "Partner.Example", Connected: true},
		{Domain: "partner.example", Connected: true, TLSVersion: "TLS1.2", Verified: false},
		{Domain: "partner.example", Probe: true, Error: "connection refused"},
		{Domain: "partner.example", Connected: true, TLSVersion: "TLS1.3", Verified: true, MTASTSMode: "enforce"},
		{Domain: "partner.example", Probe: true, Connected: true, TLSVersion: "TLS1.3", DANE: true},
		{Domain: "partner.example", Connected: true}, // plaintext later: lowers nothing
		{Domain: "partner.example", Probe: true, Error: "no STARTTLS"},
	}
	for i, obs := range steps {
		clock = clock.Add(time.Minute)
		if err := pg.ObserveTLS(obs); err != nil {
			t.Fatal(err)
		}
		if err := bolt.ObserveTLS(obs); err != nil {
			t.Fatal(err)
		}
		got, err := pg.DomainInfo("PARTNER.example")
		if err != nil {
			t.Fatal(err)
		}
		want, _ := bolt.DomainInfo("partner.example")
		if g, w := asJSON(t, got), asJSON(t, want); g != w {
			t.Fatalf("after step %d (%+v):\nshared %s\nspool  %s", i, obs, g, w)
		}
	}
	if list, _ := pg.Domains(); len(list) != 1 || !list[0].TLSSeen || !list[0].Verified || !list[0].DANE {
		t.Fatalf("Domains: %+v", list)
	}
	if err := pg.ResetDomain("partner.example"); err != nil {
		t.Fatal(err)
	}
	if d, err := pg.DomainInfo("partner.example"); d != nil || err != nil {
		t.Fatalf("after reset: %+v, %v", d, err)
	}
	if err := pg.ResetDomain("partner.example"); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("reset of an unknown domain: %v, want ErrNotFound", err)
	}
}

// TestTLSRatchetUnderConcurrentWriters: while two nodes write at once —
// one seeing TLS with a verified certificate, the other plaintext
// (stripped STARTTLS) — the shared record never loses what was learned.
func TestTLSRatchetUnderConcurrentWriters(t *testing.T) {
	dsn := testutil.PostgreSQL(t)
	a, b := open(t, dsn, nil), open(t, dsn, nil)
	var wg sync.WaitGroup
	const rounds = 200
	for i, node := range []*Store{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range rounds {
				obs := queue.TLSObservation{Domain: fmt.Sprintf("d%d.example", j%10), Connected: true}
				if i == 0 {
					obs.TLSVersion, obs.Verified = "TLS1.3", true
				}
				if err := node.ObserveTLS(obs); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	list, err := b.Domains()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 10 {
		t.Fatalf("%d domains, want 10", len(list))
	}
	for _, d := range list {
		if !d.TLSSeen || !d.Verified || !reflect.DeepEqual(d.TLSVersions, []string{"TLS1.3"}) {
			t.Errorf("%s lost what one node learned: %+v", d.Domain, d)
		}
	}
}

// TestAPIKeysShared: a key stored through one node is found, listed and
// revoked through another, with its own send limits; an ID in use is
// refused; a key copied from a node's spool keeps its limits.
func TestAPIKeysShared(t *testing.T) {
	dsn := testutil.PostgreSQL(t)
	a, b := open(t, dsn, nil), open(t, dsn, nil)
	created := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	k := queue.APIKey{ID: "k1", Name: "ehr", Scope: "send", Hash: []byte{1, 2, 3}, Domains: []string{"clinic.example"},
		RatePerMinute: 120, MaxMessageBytes: 1 << 20, Created: created}
	if err := a.PutAPIKey(k); err != nil {
		t.Fatal(err)
	}
	if err := b.PutAPIKey(k); err == nil {
		t.Fatal("a second key with the same ID was stored")
	}
	got, err := b.APIKeyByID("k1")
	if err != nil || asJSON(t, got) != asJSON(t, k) {
		t.Fatalf("through the other node: %+v, %v; want %+v", got, err, k)
	}
	if _, err := b.APIKeyByID("nope"); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("unknown key: %v", err)
	}
	revoked := created.Add(time.Hour)
	if err := b.RevokeAPIKey("k1", revoked); err != nil {
		t.Fatal(err)
	}
	if err := a.RevokeAPIKey("k1", revoked.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	list, err := a.APIKeys()
	if err != nil || len(list) != 1 || !list[0].Revoked.Equal(revoked) {
		t.Fatalf("list through the first node: %+v, %v; want k1 revoked at %s", list, err, revoked)
	}
	if err := a.RevokeAPIKey("nope", revoked); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("revoking an unknown key: %v", err)
	}
	copied := queue.APIKey{ID: "k2", Name: "crm", Scope: "send", Hash: []byte{4, 5, 6}, Domains: []string{"clinic.example"},
		RatePerMinute: 30, MaxMessageBytes: 4096, Created: created}
	if added, err := a.MergeAPIKey(copied); err != nil || !added {
		t.Fatalf("MergeAPIKey: %v, %v", added, err)
	}
	if got, err := b.APIKeyByID("k2"); err != nil || asJSON(t, got) != asJSON(t, copied) {
		t.Fatalf("a key copied into the shared store: %+v, %v; want %+v", got, err, copied)
	}

	// The hash (the key of signed requests) is sealed: a dump of the
	// database signs nothing. A node with another fleet key, or none,
	// is refused.
	var stored []byte
	a.pool.QueryRow(context.Background(), "SELECT hash FROM api_keys WHERE id = 'k1'").Scan(&stored)
	if len(stored) == 0 || bytes.Contains(stored, k.Hash) {
		t.Errorf("the database holds the key's hash in clear: %x", stored)
	}
	other := filepath.Join(t.TempDir(), "other.key")
	os.WriteFile(other, bytes.Repeat([]byte{1}, 32), 0o600)
	if _, err := Open(context.Background(), Options{DSN: dsn, KeyFile: other}); !errors.Is(err, ErrFleetKeyWrong) {
		t.Errorf("a node with another fleet key: %v, want ErrFleetKeyWrong", err)
	}
	if _, err := Open(context.Background(), Options{DSN: dsn, KeyFile: filepath.Join(t.TempDir(), "missing.key")}); !errors.Is(err, ErrFleetKeyMissing) {
		t.Errorf("a node without the fleet key: %v, want ErrFleetKeyMissing", err)
	}
}

// TestLeaderElectedOnceAndReplaced: of three nodes exactly one leads;
// when it stops another takes over, and when the leader's database
// session is killed it stops leading and one node (maybe itself, on a
// new session) leads again.
func TestLeaderElectedOnceAndReplaced(t *testing.T) {
	dsn := testutil.PostgreSQL(t)
	type node struct {
		l      *Leader
		cancel context.CancelFunc
		done   chan struct{}
	}
	var nodes []*node
	for range 3 {
		s := open(t, dsn, nil)
		ctx, cancel := context.WithCancel(context.Background())
		n := &node{l: s.NewLeader(50 * time.Millisecond), cancel: cancel, done: make(chan struct{})}
		go func() { n.l.Run(ctx); close(n.done) }()
		t.Cleanup(func() { cancel(); <-n.done })
		nodes = append(nodes, n)
	}
	leaders := func() []int {
		var out []int
		for i, n := range nodes {
			if n.l.IsLeader() {
				out = append(out, i)
			}
		}
		return out
	}
	waitOne := func(what string, not int) int {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			if l := leaders(); len(l) == 1 && l[0] != not {
				return l[0]
			} else if len(l) > 1 {
				t.Fatalf("%s: nodes %v lead at once", what, l)
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("%s: no single leader within 15 s (leaders %v)", what, leaders())
		return -1
	}
	first := waitOne("at start", -1)
	for range 10 { // and it stays one
		time.Sleep(30 * time.Millisecond)
		if l := leaders(); len(l) != 1 || l[0] != first {
			t.Fatalf("leaders %v, want only node %d", l, first)
		}
	}
	nodes[first].cancel()
	<-nodes[first].done
	second := waitOne("after the leader stopped", first)

	// The leader's session dies (a network cut, a database restart).
	s := open(t, dsn, nil)
	var killed int
	if err := s.pool.QueryRow(context.Background(), `SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_locks
		WHERE locktype = 'advisory' AND classid = $1 AND objid = $2 AND granted) AS k`,
		int64(lockLeader>>32), int64(lockLeader&0xffffffff)).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if killed != 1 {
		t.Fatalf("%d sessions held the leader lock, want 1 (node %d's)", killed, second)
	}
	waitOne("after the leader's session was killed", -1)
}

// asJSON is v as the API shows it: what two stores must agree on.
func asJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestTLSRPTAggregatesOfTheFleet: sessions counted by two nodes at once
// add up in one aggregate per day, domain and policy, the same record the
// spool would make of the same sessions; the days before a day are due,
// and a sent one goes.
func TestTLSRPTAggregatesOfTheFleet(t *testing.T) {
	dsn := testutil.PostgreSQL(t)
	a, b := open(t, dsn, nil), open(t, dsn, nil)
	dir := t.TempDir()
	bolt, err := queue.Open(queue.Options{Path: filepath.Join(dir, "spool.db"), KeyFile: filepath.Join(dir, "spool.key")})
	if err != nil {
		t.Fatal(err)
	}
	defer bolt.Close()
	sess := func(i int) queue.TLSSession {
		s := queue.TLSSession{Day: "2026-11-28", Domain: "Partner.Example", PolicyType: "sts",
			PolicyString: []string{"version: STSv1", "mode: enforce"}, MXHosts: []string{"mx.partner.example"}, OK: i%3 != 0}
		if !s.OK {
			s.Failure = queue.TLSRPTFailure{ResultType: "certificate-expired", ReceivingMX: "mx.partner.example", ReceivingIP: "192.0.2.1"}
		}
		return s
	}
	const each = 30
	var wg sync.WaitGroup
	for n, node := range []*Store{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := node.RecordTLSSession(sess(n*each + i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for i := range 2 * each {
		bolt.RecordTLSSession(sess(i))
	}
	b.RecordTLSSession(queue.TLSSession{Day: "2026-11-29", Domain: "partner.example", PolicyType: "sts", OK: true})
	got, err := a.TLSRPTBefore("2026-11-29")
	if err != nil || len(got) != 1 {
		t.Fatalf("due aggregates: %+v, %v", got, err)
	}
	want, _ := bolt.TLSRPTBefore("2026-11-29")
	if asJSON(t, got) != asJSON(t, want) {
		t.Fatalf("the fleet's aggregate:\n%s\nthe spool's of the same sessions:\n%s", asJSON(t, got), asJSON(t, want))
	}
	if got[0].Successes+got[0].Failures != 2*each || got[0].Details[0].Count != got[0].Failures {
		t.Errorf("counts lost between nodes: %+v", got[0])
	}
	// A node counts a late session into 11-28 while its report is out:
	// the sent counts go, the late one stays for the next report.
	a.RecordTLSSession(sess(0))
	if err := b.DeleteTLSRPT(got[0]); err != nil {
		t.Fatal(err)
	}
	left, _ := a.TLSRPTBefore("2026-11-30")
	if len(left) != 2 || left[0].Day != "2026-11-28" || left[0].Successes != 0 || left[0].Failures != 1 ||
		len(left[0].Details) != 1 || left[0].Details[0].Count != 1 || left[1].Day != "2026-11-29" {
		t.Errorf("after sending 11-28 with a late session: %+v", left)
	}
	if err := b.DeleteTLSRPT(left[0]); err != nil {
		t.Fatal(err)
	}
	if left, _ := a.TLSRPTBefore("2026-11-30"); len(left) != 1 || left[0].Day != "2026-11-29" {
		t.Errorf("after sending the late session: %+v", left)
	}
}

// TestNoncesAcrossNodes: a signed request's nonce seen by one node is
// refused by another within the window, and forgotten after it.
func TestNoncesAcrossNodes(t *testing.T) {
	dsn := testutil.PostgreSQL(t)
	a, b := open(t, dsn, nil), open(t, dsn, nil)
	if ok, err := a.FreshNonce("k1\x00n-1"); err != nil || !ok {
		t.Fatalf("first sight on node A: %v %v", ok, err)
	}
	if ok, _ := b.FreshNonce("k1\x00n-1"); ok {
		t.Error("node B took a nonce node A had seen (a replay to another node)")
	}
	if ok, _ := b.FreshNonce("k1\x00n-2"); !ok {
		t.Error("a new nonce refused")
	}
	// Past the window (by the database's clock) a nonce is forgotten.
	if _, err := a.pool.Exec(context.Background(), "UPDATE api_nonces SET seen = now() - interval '11 minutes'"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := b.FreshNonce("k1\x00n-1"); !ok {
		t.Error("a nonce is remembered past the window (the table grows without end)")
	}
}

// TestFleetKeyFirstNodesAtOnce: nodes that start together on an empty
// fleet, with one key path (a shared directory), end with one key on
// disk, the one the database's check was made with; an API key stored
// before hashes were sealed is sealed by the first node with the key.
func TestFleetKeyFirstNodesAtOnce(t *testing.T) {
	dsn := testutil.PostgreSQL(t)
	keyFile := filepath.Join(t.TempDir(), "fleet.key")
	// A key stored by a node of the first schema, its hash in clear.
	pre, err := Open(context.Background(), Options{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	plain := bytes.Repeat([]byte{7}, 32)
	if _, err := pre.pool.Exec(context.Background(), `INSERT INTO api_keys (id, name, scope, hash, created) VALUES ('old', 'ehr', 'send', $1, now())`, plain); err != nil {
		t.Fatal(err)
	}
	pre.Close()
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(context.Background(), Options{DSN: dsn, KeyFile: keyFile})
			if err == nil {
				s.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("nodes starting together: %v", err)
	}
	again, err := Open(context.Background(), Options{DSN: dsn, KeyFile: keyFile})
	if err != nil {
		t.Fatalf("a restart with the key on disk: %v", err)
	}
	defer again.Close()
	k, err := again.APIKeyByID("old")
	if err != nil || !bytes.Equal(k.Hash, plain) {
		t.Fatalf("the key stored in clear before: %+v, %v", k, err)
	}
	var stored []byte
	again.pool.QueryRow(context.Background(), "SELECT hash FROM api_keys WHERE id = 'old'").Scan(&stored)
	if bytes.Equal(stored, plain) {
		t.Error("the old key's hash is still in clear")
	}
}

// TestSendRatesAcrossNodes: each node publishes its counts per key and
// sees the others' summed; a count at 0 withdraws the node's; a node
// that stopped publishing ages out.
func TestSendRatesAcrossNodes(t *testing.T) {
	dsn := testutil.PostgreSQL(t)
	a, b := open(t, dsn, nil), open(t, dsn, nil)
	sync := func(s *Store, node string, mine map[string]int) map[string]int {
		t.Helper()
		others, err := s.SyncRates(node, mine)
		if err != nil {
			t.Fatal(err)
		}
		return others
	}
	sync(a, "a", map[string]int{"sk1": 3, "sk2": 1})
	sync(b, "b", map[string]int{"sk1": 2})
	sync(b, "c", map[string]int{"sk1": 4})
	if got := sync(a, "a", map[string]int{"sk1": 3, "sk2": 1}); got["sk1"] != 6 || got["sk2"] != 0 {
		t.Errorf("node a sees %v, want sk1 6 (b's 2 and c's 4), sk2 none", got)
	}
	if got := sync(b, "b", map[string]int{"sk1": 0}); got["sk1"] != 7 || got["sk2"] != 1 {
		t.Errorf("node b sees %v, want sk1 7, sk2 1", got)
	}
	if got := sync(a, "a", nil); got["sk1"] != 4 {
		t.Errorf("after b withdrew its count, a sees %v, want sk1 4 (c's)", got)
	}
	if _, err := b.pool.Exec(context.Background(), "UPDATE api_rate SET updated = now() - interval '2 minutes' WHERE node = 'c'"); err != nil {
		t.Fatal(err)
	}
	if got := sync(a, "a", nil); got["sk1"] != 0 {
		t.Errorf("a node silent for two minutes still counts: %v", got)
	}
}

// TestSyncRatesAfterAnOutage: after the database was away for more than
// rateFresh every node's rows are stale, and two nodes' first syncs at
// once each upsert their own rows and remove stale ones: neither may wait
// for the other's (PostgreSQL found deadlocks when they did).
func TestSyncRatesAfterAnOutage(t *testing.T) {
	dsn := testutil.PostgreSQL(t)
	a, b := open(t, dsn, nil), open(t, dsn, nil)
	mine := map[string]int{}
	for i := range 50 {
		mine[fmt.Sprintf("sk%d", i)] = 1
	}
	fails := 0
	for round := range 20 {
		for _, n := range []string{"a", "b"} {
			if _, err := a.SyncRates(n, mine); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := a.pool.Exec(context.Background(), "UPDATE api_rate SET updated = now() - interval '2 minutes'"); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, s := range []*Store{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = s.SyncRates([]string{"a", "b"}[i], mine)
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				fails++
				t.Errorf("round %d: %v", round, err)
			}
		}
	}
	if fails > 0 {
		t.Logf("%d of 40 syncs failed", fails)
	}
}
