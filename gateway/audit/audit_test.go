package audit_test

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sealgate/sealgate/gateway/audit"
	"github.com/sealgate/sealgate/queue"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	t     *testing.T
	dir   string
	clock *clock
	store *queue.Store
	trail *audit.Trail
	key   ed25519.PrivateKey
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{t: t, dir: t.TempDir(), clock: &clock{t: time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC)}}
	key, err := audit.LoadOrCreateKey(filepath.Join(f.dir, "audit-signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	f.key = key
	f.open()
	return f
}

func (f *fixture) open() {
	s, err := queue.Open(queue.Options{Path: filepath.Join(f.dir, "spool.db"), KeyFile: filepath.Join(f.dir, "spool.key"),
		Now: f.clock.Now, Audit: audit.FromChange})
	if err != nil {
		f.t.Fatal(err)
	}
	f.store = s
	f.trail = audit.New(s, f.key, nil)
	f.t.Cleanup(func() { s.Close() })
}

// message: alice to bob (delivered over verified TLS) and carol
// (bounced), one attempt each.
func (f *fixture) message() string {
	f.t.Helper()
	id, err := f.store.Enqueue(context.Background(), queue.Envelope{From: "alice@org.test", Recipients: []string{"bob@dest.test", "carol@else.test"},
		MessageID: "<lab-1@org.test>", ClientAddr: "40.92.1.1:5000", TLS: "TLS1.3 TLS_AES_128_GCM_SHA256",
		Decisions: []queue.RcptDecision{{Chain: []string{"tls-verified", "bounce"}, By: "tag [secure]"}, {Chain: []string{"tls"}, By: "default"}}},
		[]byte("Message-ID: <lab-1@org.test>\r\nSubject: results\r\n\r\nbody\r\n"))
	if err != nil {
		f.t.Fatal(err)
	}
	f.clock.Add(time.Second)
	att := queue.Attempt{Destination: "dest.test", MXHost: "mx.dest.test", IP: "192.0.2.5", TLSVersion: "TLS1.3", Cipher: "TLS_AES_128_GCM_SHA256",
		CertVerified: true, TLSLevel: "verify", Reply: "250 2.0.0 Ok: queued as 4Xz", Recipients: []string{"bob@dest.test"}}
	if _, _, err := f.store.RecordAttempt(id, att, []queue.RcptOutcome{{Address: "bob@dest.test", Delivered: true, Code: 250, Message: att.Reply}}, nil); err != nil {
		f.t.Fatal(err)
	}
	f.clock.Add(time.Second)
	att = queue.Attempt{Destination: "else.test", MXHost: "mx.else.test", IP: "192.0.2.6", Reply: "550 5.1.1 no such user", Recipients: []string{"carol@else.test"}}
	if _, _, err := f.store.RecordAttempt(id, att, []queue.RcptOutcome{{Address: "carol@else.test", Permanent: true, Code: 550, Status: "5.1.1", Message: att.Reply}}, nil); err != nil {
		f.t.Fatal(err)
	}
	return id
}

func TestTheTrailTellsHowAMessageLeft(t *testing.T) {
	f := newFixture(t)
	id := f.message()
	if cp, err := f.trail.Checkpoint(f.clock.Now()); err != nil || cp == nil {
		t.Fatalf("Checkpoint = %+v, %v", cp, err)
	}
	rep, err := f.trail.Verify()
	if err != nil || !rep.OK() || rep.Entries != 5 || rep.Checkpoints != 1 || rep.LastCheckpoint.Seq != 5 {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}

	found, err := f.trail.Search(audit.Filter{Recipient: "BOB@dest.test"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, r := range found {
		types = append(types, r.Type)
	}
	// The whole story of the message, though only some records name bob.
	if strings.Join(types, " ") != "received attempt attempt bounced finished" {
		t.Fatalf("records %v", types)
	}
	rcv, att, fin := found[0], found[1], found[4]
	if rcv.QueueID != id || rcv.MessageID != "<lab-1@org.test>" || rcv.Client.TLS != "TLS1.3 TLS_AES_128_GCM_SHA256" ||
		rcv.Decisions[0].By != "tag [secure]" || strings.Join(rcv.Decisions[0].Chain, ",") != "tls-verified,bounce" {
		t.Errorf("received: %+v", rcv.Record)
	}
	if a := att.Attempt; a == nil || !a.CertVerified || a.TLSVersion != "TLS1.3" || a.Reply != "250 2.0.0 Ok: queued as 4Xz" {
		t.Errorf("attempt: %+v", att.Record)
	}
	if len(fin.Outcomes) != 2 || fin.Outcomes[0].State != "delivered" || fin.Outcomes[1].State != "bounced" || fin.Outcomes[1].Status != "5.1.1" {
		t.Errorf("finished: %+v", fin.Outcomes)
	}
	if got, _ := f.trail.Search(audit.Filter{MessageID: "lab-1@org.test", From: f.clock.Now().Add(time.Hour)}, 0); len(got) != 0 {
		t.Errorf("a time range after the message found %d records", len(got))
	}

	// The trail outlives the spool record.
	if err := f.store.Delete(id); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.trail.Search(audit.Filter{QueueID: id}, 0); len(got) != 5 {
		t.Errorf("after the record was deleted: %d records", len(got))
	}
}

// TestVerifyNamesTheEntryTamperedWith: an entry edited, deleted or moved
// in the bbolt file is found and named.
func TestVerifyNamesTheEntryTamperedWith(t *testing.T) {
	for _, c := range []struct {
		name   string
		tamper func(b *bolt.Bucket)
		want   string
	}{
		{"edited", func(b *bolt.Bucket) {
			v := append([]byte(nil), b.Get(key(2))...)
			v[len(v)-5] ^= 1
			b.Put(key(2), v)
		}, "entry 2 does not open"},
		{"deleted", func(b *bolt.Bucket) { b.Delete(key(3)) }, "entry 3 is missing (deleted)"},
		{"reordered", func(b *bolt.Bucket) {
			two, three := append([]byte(nil), b.Get(key(2))...), append([]byte(nil), b.Get(key(3))...)
			b.Put(key(2), three)
			b.Put(key(3), two)
		}, "entry 2 does not open"},
		{"cut from the end", func(b *bolt.Bucket) { b.Delete(key(5)) }, "entry 5 is missing (deleted from the end)"},
		{"cut from the start", func(b *bolt.Bucket) { b.Delete(key(1)); b.Delete(key(2)) }, "entries 1 to 2 are missing (deleted)"},
		{"checkpoints deleted", func(b *bolt.Bucket) {
			b.Tx().DeleteBucket([]byte("audit-checkpoints"))
		}, "the signed checkpoint at entry 5 is missing"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.message()
			if _, err := f.trail.Checkpoint(f.clock.Now()); err != nil {
				t.Fatal(err)
			}
			f.store.Close()
			db, err := bolt.Open(filepath.Join(f.dir, "spool.db"), 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(func(tx *bolt.Tx) error { c.tamper(tx.Bucket([]byte("audit"))); return nil }); err != nil {
				t.Fatal(err)
			}
			db.Close()
			f.open()
			rep, err := f.trail.Verify()
			if err != nil || rep.OK() || !strings.Contains(rep.Problem, c.want) {
				t.Errorf("Verify after the entry was %s: %+v, %v; want %q", c.name, rep, err, c.want)
			}
		})
	}
}

func key(seq uint64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, seq)
	return k
}

// memStorage is a Storage whose entries a test may rewrite as someone
// holding the spool key could: re-sealed, re-hashed, re-chained.
type memStorage struct {
	entries     []*queue.AuditEntry
	checkpoints map[uint64][]byte
	head        *queue.AuditEntry // the last entry appended
	base        queue.AuditEntry  // the last entry pruned
	lastCP      uint64
}

func (m *memStorage) Audit(records ...[]byte) error {
	for _, r := range records {
		e := &queue.AuditEntry{Seq: 1, Record: r}
		if m.head != nil {
			e.Seq, e.Prev = m.head.Seq+1, m.head.Hash
		}
		e.Hash = queue.AuditHash(e.Seq, e.Prev, e.Record)
		m.entries = append(m.entries, e)
		m.head = e
	}
	return nil
}

func (m *memStorage) AuditHead() (uint64, string, error) {
	if m.head == nil {
		return 0, "", nil
	}
	return m.head.Seq, m.head.Hash, nil
}

func (m *memStorage) AuditBase() (uint64, string, error)   { return m.base.Seq, m.base.Hash, nil }
func (m *memStorage) AuditLastCheckpoint() (uint64, error) { return m.lastCP, nil }

func (m *memStorage) ForEachAudit(from uint64, fn func(uint64, *queue.AuditEntry, error) error) error {
	for _, e := range m.entries {
		if e.Seq >= from {
			if err := fn(e.Seq, e, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *memStorage) PutAuditCheckpoint(seq uint64, cp []byte) error {
	if m.checkpoints == nil {
		m.checkpoints = map[uint64][]byte{}
	}
	m.checkpoints[seq] = cp
	m.lastCP = seq
	return nil
}

func (m *memStorage) ForEachAuditCheckpoint(fn func(uint64, []byte) error) error {
	seqs := slices.Sorted(maps.Keys(m.checkpoints))
	for _, seq := range seqs {
		if err := fn(seq, m.checkpoints[seq]); err != nil {
			return err
		}
	}
	return nil
}

func (m *memStorage) PruneAudit(seq uint64, record []byte) (int, error) {
	n := 0
	for len(m.entries) > 0 && m.entries[0].Seq <= seq {
		m.base = *m.entries[0]
		m.entries, n = m.entries[1:], n+1
	}
	for s := range m.checkpoints {
		if s < seq {
			delete(m.checkpoints, s)
		}
	}
	return n, m.Audit(record)
}

func record(t time.Time, typ string) []byte {
	data, _ := json.Marshal(audit.Record{Time: t, Type: typ, QueueID: "q1"})
	return data
}

// TestVerifyCatchesAForgerWithTheSpoolKey: an entry edited and its hash
// recomputed breaks the link of the next; the whole tail re-chained
// still differs from the signed checkpoint; a forged checkpoint does not
// verify.
func TestVerifyCatchesAForgerWithTheSpoolKey(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	t0 := time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC)
	build := func() (*memStorage, *audit.Trail) {
		m := &memStorage{}
		tr := audit.New(m, key, nil)
		for i := range 6 {
			m.Audit(record(t0.Add(time.Duration(i)*time.Minute), "attempt"))
			if i == 3 {
				tr.Checkpoint(t0.Add(4 * time.Minute))
			}
		}
		tr.Checkpoint(t0.Add(10 * time.Minute))
		return m, tr
	}

	m, tr := build()
	m.entries[1].Record = record(t0, "delivered")
	m.entries[1].Hash = queue.AuditHash(2, m.entries[1].Prev, m.entries[1].Record)
	if rep, _ := tr.Verify(); !strings.Contains(rep.Problem, "entry 3 does not follow entry 2") {
		t.Errorf("edited and re-hashed: %+v", rep)
	}

	m, tr = build()
	m.entries[1].Record = record(t0, "delivered")
	for i := 1; i < len(m.entries); i++ { // re-chain the whole tail
		m.entries[i].Prev = m.entries[i-1].Hash
		m.entries[i].Hash = queue.AuditHash(m.entries[i].Seq, m.entries[i].Prev, m.entries[i].Record)
	}
	if rep, _ := tr.Verify(); !strings.Contains(rep.Problem, "entry 4 differs from the signed checkpoint") {
		t.Errorf("edited and re-chained: %+v", rep)
	}

	m, tr = build()
	var cp audit.Checkpoint
	json.Unmarshal(m.checkpoints[6], &cp)
	cp.Hash = strings.Repeat("0", 64)
	m.checkpoints[6], _ = json.Marshal(cp)
	if rep, _ := tr.Verify(); !strings.Contains(rep.Problem, "checkpoint at entry 6") || !strings.Contains(rep.Problem, "does not verify") {
		t.Errorf("forged checkpoint: %+v", rep)
	}

	// Pruning keeps the rest verifiable from the checkpoint that anchors it.
	m, tr = build()
	if n, err := tr.Prune(t0.Add(5 * time.Minute)); err != nil || n != 4 {
		t.Fatalf("Prune = %d, %v", n, err)
	}
	if rep, _ := tr.Verify(); !rep.OK() || rep.First != 5 || rep.Entries != 3 {
		t.Errorf("after pruning: %+v", rep)
	}
	m.entries = m.entries[1:] // and a deletion after the anchor is still found
	if rep, _ := tr.Verify(); !strings.Contains(rep.Problem, "entry 5 is missing (deleted)") {
		t.Errorf("a deletion after pruning: %+v", rep)
	}

	// Entries deleted up to a checkpoint, with no prune on record: found.
	m, tr = build()
	m.entries = m.entries[4:]
	if rep, _ := tr.Verify(); !strings.Contains(rep.Problem, "entries 1 to 4 are missing") {
		t.Errorf("history deleted up to a checkpoint: %+v", rep)
	}
	// Every checkpoint deleted: missed.
	m, tr = build()
	m.checkpoints = map[uint64][]byte{}
	if rep, _ := tr.Verify(); !strings.Contains(rep.Problem, "the signed checkpoint at entry 6 is missing") {
		t.Errorf("checkpoints deleted: %+v", rep)
	}
	// One checkpoint of the chain deleted: missed too.
	m, tr = build()
	delete(m.checkpoints, 4)
	if rep, _ := tr.Verify(); !strings.Contains(rep.Problem, "the signed checkpoint at entry 4 is missing") {
		t.Errorf("a checkpoint deleted: %+v", rep)
	}
	// Everything pruned on a quiet node: still intact.
	m, tr = build()
	if n, err := tr.Prune(t0.Add(time.Hour)); err != nil || n != 6 {
		t.Fatalf("Prune of everything = %d, %v", n, err)
	}
	if rep, _ := tr.Verify(); !rep.OK() {
		t.Errorf("a fully pruned trail: %+v", rep)
	}
}

// TestPruningTheSpoolsTrail: on the bbolt spool, records past retention
// go up to a signed checkpoint, the rest still verifies from it (the
// prune itself on record), and a deletion after it is still named.
func TestPruningTheSpoolsTrail(t *testing.T) {
	f := newFixture(t)
	f.message() // entries 1-5
	if _, err := f.trail.Checkpoint(f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	f.clock.Add(24 * time.Hour)
	cutoff := f.clock.Now()
	f.message() // entries 6-10, a day later
	if _, err := f.trail.Checkpoint(f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	n, err := f.trail.Prune(cutoff)
	if err != nil || n != 5 {
		t.Fatalf("Prune = %d, %v; want the first message's 5 entries", n, err)
	}
	rep, err := f.trail.Verify()
	if err != nil || !rep.OK() || rep.First != 6 || rep.Entries != 6 { // 6-10 and the prune's own record
		t.Fatalf("after pruning: %+v, %v", rep, err)
	}
	if got, _ := f.trail.Search(audit.Filter{Type: "admin"}, 0); len(got) != 1 || !strings.Contains(got[0].Detail, "entries up to 5") {
		t.Errorf("the prune on record: %+v", got)
	}

	f.store.Close()
	db, err := bolt.Open(filepath.Join(f.dir, "spool.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		k := make([]byte, 8)
		binary.BigEndian.PutUint64(k, 7)
		return tx.Bucket([]byte("audit")).Delete(k)
	})
	db.Close()
	f.open()
	if rep, _ := f.trail.Verify(); !strings.Contains(rep.Problem, "entry 7 is missing (deleted)") {
		t.Errorf("a deletion after pruning: %+v", rep)
	}
}

// A genuine trail is never put on record as tampered with: a node killed
// before its next checkpoint, and days later a command on its stopped
// spool writes and signs (judging only what it found, not its own entry);
// or the interval lowered after such a crash (the tail is judged by the
// interval its checkpoint was signed under).
func TestACrashTailIsNoTampering(t *testing.T) {
	f := newFixture(t)
	f.message()
	if _, err := f.trail.Checkpoint(f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	f.clock.Add(time.Minute)
	f.message() // entries 6-10, then kill -9 before the next checkpoint
	f.clock.Add(72 * time.Hour)
	head, _, err := f.store.AuditHead()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.store.Audit(audit.Admin(f.clock.Now(), "hold", "cli", "", "held")); err != nil {
		t.Fatal(err)
	}
	if _, problem, err := f.trail.SignHead(f.clock.Now(), head); err != nil || problem != "" {
		t.Errorf("a command's signing after a crash: %q, %v", problem, err)
	}
	if rep, _ := f.trail.Verify(); !rep.OK() {
		t.Errorf("verify: %s", rep.Problem)
	}

	f = newFixture(t)
	f.trail.SetCheckpointInterval(time.Hour)
	f.message()
	if _, err := f.trail.Checkpoint(f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	f.message()
	f.clock.Add(40 * time.Minute) // within the hour between checkpoints
	f.message()
	f.trail.SetCheckpointInterval(5 * time.Minute) // kill -9; lowered; started
	if rep, _ := f.trail.Verify(); !rep.OK() {
		t.Errorf("verify after the interval was lowered: %s", rep.Problem)
	}
	if _, problem, err := f.trail.SignHead(f.clock.Now(), 0); err != nil || problem != "" {
		t.Errorf("signing at start after the interval was lowered: %q, %v", problem, err)
	}

	// But a tail longer than the interval it was signed under is named.
	f = newFixture(t)
	f.message()
	if _, err := f.trail.Checkpoint(f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	f.message()
	f.clock.Add(time.Hour)
	f.message()
	if rep, _ := f.trail.Verify(); !strings.Contains(rep.Problem, "entries 6 to 15") || !strings.Contains(rep.Problem, "covered by no signed checkpoint") {
		t.Errorf("an hour unsigned under a 5m interval: %+v", rep)
	}
}
