package queue

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// testClock is a settable clock.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// openTest opens a store in a temporary directory and checks its
// consistency when the test ends.
func openTest(t *testing.T, opts Options) *Store {
	t.Helper()
	dir := t.TempDir()
	if opts.Path == "" {
		opts.Path = filepath.Join(dir, "spool.db")
	}
	if opts.KeyFile == "" {
		opts.KeyFile = filepath.Join(dir, "spool.key")
	}
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// A test that closed the store itself checks it otherwise.
		if err := s.Check(); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("spool check: %v", err)
		}
		s.Close()
	})
	return s
}

func enqueue(t *testing.T, s *Store, from string, body string, rcpts ...string) string {
	t.Helper()
	id, err := s.Enqueue(context.Background(), Envelope{From: from, Recipients: rcpts}, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestEnqueueRoundTripAndNoPlaintextOnDisk(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, Options{Path: filepath.Join(dir, "spool.db"), KeyFile: filepath.Join(dir, "spool.key")})
	const marker = "MARKER-body-5d1c"
	id := enqueue(t, s, "sender-marker@org.test", "Subject: x\r\n\r\n"+marker+"\r\n", "rcpt-marker@dest.test")

	m, err := s.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if m.Envelope.From != "sender-marker@org.test" || len(m.Recipients) != 1 ||
		m.Recipients[0].State != StateQueued || m.Events[0].Kind != "received" {
		t.Errorf("record: %+v", m)
	}
	body, err := s.Body(id)
	if err != nil || !bytes.Contains(body, []byte(marker)) {
		t.Fatalf("Body = %q, %v", body, err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "spool.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{marker, "sender-marker", "rcpt-marker"} {
		if bytes.Contains(raw, []byte(s)) {
			t.Errorf("spool file contains %q in clear", s)
		}
	}
	if fi, _ := os.Stat(filepath.Join(dir, "spool.key")); fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %o, want 600", fi.Mode().Perm())
	}
}

func TestGroupCommitSharesTransactions(t *testing.T) {
	s := openTest(t, Options{})
	const n, workers = 200, 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				_, err := s.Enqueue(context.Background(), Envelope{From: "a@b.test", Recipients: []string{"c@d.test"}},
					bytes.Repeat([]byte("x"), 10<<10))
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	msgs, _ := s.List()
	if len(msgs) != n {
		t.Fatalf("%d messages spooled, want %d", len(msgs), n)
	}
	if b := s.batches.Load(); b >= n {
		t.Errorf("%d commits for %d concurrent messages: no group commit", b, n)
	} else {
		t.Logf("%d messages in %d commits", n, b)
	}
}

func TestRecordAttemptStates(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	s := openTest(t, Options{Now: clock.Now, RetryInitial: time.Minute, RetryMax: 4 * time.Minute, Expiry: time.Hour})
	id := enqueue(t, s, "alice@org.test", "Subject: s\r\n\r\nb\r\n", "ok@d.test", "later@d.test", "gone@d.test")

	var dsnFor []string
	dsn := func(m *Message, bounced []Recipient) (Envelope, []byte, error) {
		for _, r := range bounced {
			dsnFor = append(dsnFor, r.Address)
		}
		return Envelope{From: "", Recipients: []string{m.Envelope.From}}, []byte("Subject: DSN\r\n\r\n"), nil
	}
	m, dsnID, err := s.RecordAttempt(id, Attempt{Destination: "d.test"}, []RcptOutcome{
		{Address: "ok@d.test", Delivered: true, Code: 250, RemoteMTA: "mx.d.test"},
		{Address: "later@d.test", Code: 451, Status: "4.2.0", Message: "451 4.2.0 busy"},
		{Address: "gone@d.test", Permanent: true, Code: 550, Status: "5.1.1", Message: "550 5.1.1 no such user"},
	}, dsn)
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]Recipient{}
	for _, r := range m.Recipients {
		states[r.Address] = r
	}
	if states["ok@d.test"].State != StateDelivered || states["gone@d.test"].State != StateBounced ||
		states["later@d.test"].State != StateDeferred {
		t.Fatalf("states: %+v", m.Recipients)
	}
	if d := states["later@d.test"].NextAttempt.Sub(clock.Now()); d < 54*time.Second || d > 66*time.Second {
		t.Errorf("first retry in %s, want 1m ± 10%%", d)
	}
	if dsnID == "" || len(dsnFor) != 1 || dsnFor[0] != "gone@d.test" {
		t.Fatalf("DSN id %q for %v", dsnID, dsnFor)
	}
	d, err := s.Get(dsnID)
	if err != nil || d.Envelope.From != "" || !d.Envelope.IsDSN || d.Envelope.Recipients[0] != "alice@org.test" {
		t.Fatalf("DSN record %+v, %v", d, err)
	}

	// Backoff doubles and caps at RetryMax.
	for i, want := range []time.Duration{2 * time.Minute, 4 * time.Minute, 4 * time.Minute} {
		clock.Add(time.Minute)
		m, _, err = s.RecordAttempt(id, Attempt{}, []RcptOutcome{{Address: "later@d.test", Code: 451}}, dsn)
		if err != nil {
			t.Fatal(err)
		}
		r := m.Recipients[1]
		if d := r.NextAttempt.Sub(clock.Now()); d < want*9/10 || d > want*11/10 {
			t.Errorf("retry %d: next in %s, want %s ± 10%%", i+2, d, want)
		}
	}

	// Past expiry the deferred recipient bounces with 4.4.7 and a DSN.
	clock.Add(time.Hour)
	m, dsnID, err = s.RecordAttempt(id, Attempt{}, []RcptOutcome{{Address: "later@d.test", Code: 451, Message: "busy"}}, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if r := m.Recipients[1]; r.State != StateBounced || r.Status != "4.4.7" || dsnID == "" {
		t.Errorf("after expiry: %+v, dsn %q", r, dsnID)
	}
	if m.DoneAt.IsZero() {
		t.Error("message with only final recipients not marked done")
	}
	if _, err := s.Body(id); !errors.Is(err, ErrBodyGone) {
		t.Errorf("Body of a finished message: %v, want ErrBodyGone", err)
	}

	// A DSN that bounces causes no further DSN.
	_, again, err := s.RecordAttempt(dsnID, Attempt{}, []RcptOutcome{{Address: "alice@org.test", Permanent: true}}, dsn)
	if err != nil || again != "" {
		t.Errorf("bounce of a DSN produced DSN %q (%v)", again, err)
	}
}

func TestNullSenderGetsNoDSN(t *testing.T) {
	s := openTest(t, Options{})
	id := enqueue(t, s, "", "Subject: s\r\n\r\nb\r\n", "x@d.test")
	called := false
	_, dsnID, err := s.RecordAttempt(id, Attempt{}, []RcptOutcome{{Address: "x@d.test", Permanent: true}},
		func(*Message, []Recipient) (Envelope, []byte, error) { called = true; return Envelope{}, nil, nil })
	if err != nil || dsnID != "" || called {
		t.Errorf("null sender: dsn %q called %v err %v", dsnID, called, err)
	}
}

func TestAdminOperations(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	s := openTest(t, Options{Now: clock.Now, Retention: time.Hour})
	a := enqueue(t, s, "a@o.test", "b", "x@d.test")
	b := enqueue(t, s, "a@o.test", "b", "y@d.test")

	if err := s.Hold(a); err != nil {
		t.Fatal(err)
	}
	due, _ := s.Pending()
	if len(due) != 1 || due[0].ID != b {
		t.Errorf("Pending with %s held = %+v", a, due)
	}
	if err := s.Release(a); err != nil {
		t.Fatal(err)
	}
	if due, _ = s.Pending(); len(due) != 2 {
		t.Errorf("Pending after release = %+v", due)
	}
	s.RecordAttempt(b, Attempt{}, []RcptOutcome{{Address: "y@d.test", Code: 451}}, nil)
	if err := s.Retry(b); err != nil {
		t.Fatal(err)
	}
	m, _ := s.Get(b)
	if !m.Recipients[0].NextAttempt.Equal(clock.Now()) {
		t.Errorf("after retry next attempt %s, want now", m.Recipients[0].NextAttempt)
	}
	if n, err := s.RetryAll(); err != nil || n != 2 {
		t.Errorf("RetryAll = %d, %v", n, err)
	}
	kinds := ""
	for _, e := range m.Events {
		kinds += e.Kind + " "
	}
	if kinds != "received attempt retry " {
		t.Errorf("history %q", kinds)
	}

	for _, op := range []func(string) error{s.Hold, s.Release, s.Retry, s.Delete} {
		if err := op("nonexistent"); !errors.Is(err, ErrNotFound) {
			t.Errorf("operation on unknown id: %v, want ErrNotFound", err)
		}
	}
	if err := s.Delete(a); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(a); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Delete: %v", err)
	}

	// GC removes finished messages after the retention period only.
	s.RecordAttempt(b, Attempt{}, []RcptOutcome{{Address: "y@d.test", Delivered: true}}, nil)
	if n, _ := s.GC(); n != 0 {
		t.Errorf("GC removed %d messages inside retention", n)
	}
	clock.Add(2 * time.Hour)
	if n, _ := s.GC(); n != 1 {
		t.Errorf("GC removed %d messages after retention, want 1", n)
	}
}

func TestReopenKeepsMessagesAndLocks(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Path: filepath.Join(dir, "spool.db"), KeyFile: filepath.Join(dir, "spool.key")}
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	id := enqueue(t, s, "a@o.test", "persisted body", "x@d.test")

	second := opts
	second.LockTimeout = 50 * time.Millisecond
	if _, err := Open(second); !errors.Is(err, ErrLocked) {
		t.Errorf("second Open while locked: %v, want ErrLocked", err)
	}
	s.Close()

	s, err = Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if body, err := s.Body(id); err != nil || string(body) != "persisted body" {
		t.Errorf("after reopen: %q, %v", body, err)
	}
	if err := os.Chmod(opts.KeyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := Open(opts); err == nil {
		t.Error("a group/world-readable key was accepted")
	}
}

func TestCorruptRecordIsQuarantined(t *testing.T) {
	s := openTest(t, Options{})
	good := enqueue(t, s, "a@o.test", "good", "x@d.test")
	bad := enqueue(t, s, "a@o.test", "bad", "y@d.test")
	s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMessages).Put([]byte(bad), []byte("garbage that does not decrypt at all"))
	})
	msgs, err := s.List()
	if err != nil || len(msgs) != 1 || msgs[0].ID != good {
		t.Fatalf("List = %v, %v", msgs, err)
	}
	st, _ := s.Stats()
	if st.Quarantined != 2 { // its record and its body
		t.Errorf("quarantined %d records, want 2", st.Quarantined)
	}
	if _, err := s.Get(bad); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(corrupt) = %v", err)
	}
}

func TestFileSizeStabilisesUnderSteadyLoad(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	dir := t.TempDir()
	path := filepath.Join(dir, "spool.db")
	s := openTest(t, Options{Path: path, KeyFile: filepath.Join(dir, "k"), Now: clock.Now, Retention: time.Minute})
	body := bytes.Repeat([]byte("y"), 20<<10)
	round := func() {
		var ids []string
		for range 50 {
			id, err := s.Enqueue(context.Background(), Envelope{From: "a@o.test", Recipients: []string{"x@d.test"}}, body)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		for _, id := range ids {
			s.RecordAttempt(id, Attempt{}, []RcptOutcome{{Address: "x@d.test", Delivered: true}}, nil)
		}
		clock.Add(2 * time.Minute)
		if _, err := s.GC(); err != nil {
			t.Fatal(err)
		}
	}
	size := func() int64 { fi, _ := os.Stat(path); return fi.Size() }
	for range 5 {
		round()
	}
	warm := size()
	for range 20 {
		round()
	}
	if grown := size(); grown > warm*2 {
		t.Errorf("spool grew from %d to %d bytes under steady load", warm, grown)
	} else {
		t.Logf("spool file %d bytes after warm-up, %d after 20 more rounds", warm, grown)
	}
}

func BenchmarkEnqueue(b *testing.B) {
	dir := b.TempDir()
	s, err := Open(Options{Path: filepath.Join(dir, "spool.db"), KeyFile: filepath.Join(dir, "k")})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	body := bytes.Repeat([]byte("z"), 10<<10)
	b.SetBytes(int64(len(body)))
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Enqueue(context.Background(), Envelope{From: "a@o.test", Recipients: []string{"x@d.test"}}, body); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkCountsWith100kRecords: what /readyz costs on a large spool
// (BENCHMARKS.md). Filling the spool takes a while; the timed part is
// Counts alone.
func BenchmarkCountsWith100kRecords(b *testing.B) {
	dir := b.TempDir()
	s, err := Open(Options{Path: filepath.Join(dir, "spool.db"), KeyFile: filepath.Join(dir, "spool.key")})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	body := []byte("Subject: x\r\n\r\n" + strings.Repeat("y", 1000) + "\r\n")
	var wg sync.WaitGroup
	for w := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < 100_000; i += 50 {
				if _, err := s.Enqueue(context.Background(), Envelope{From: "a@org.test", Recipients: []string{"b@dest.test"}}, body); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ResetTimer()
	for range b.N {
		if c, err := s.Counts(); err != nil || c.Messages != 100_000 {
			b.Fatalf("Counts = %+v, %v", c, err)
		}
	}
}

// TestEnqueueWithTheSessionsID: the ID the session named in Received is
// the message's ID; a malformed or used one is refused.
func TestEnqueueWithTheSessionsID(t *testing.T) {
	s := openTest(t, Options{})
	id := NewID(time.Now())
	got, err := s.Enqueue(context.Background(), Envelope{ID: id, From: "a@org.test", Recipients: []string{"b@dest.test"}}, []byte("Subject: x\r\n\r\nx\r\n"))
	if err != nil || got != id {
		t.Fatalf("Enqueue with ID %s = %q, %v", id, got, err)
	}
	if m, err := s.Get(id); err != nil || m.ID != id {
		t.Errorf("Get = %+v, %v", m, err)
	}
	for _, bad := range []string{id, "../../etc", "zz" + id[2:]} {
		if _, err := s.Enqueue(context.Background(), Envelope{ID: bad, From: "a@org.test", Recipients: []string{"b@dest.test"}}, []byte("x\r\n")); err == nil {
			t.Errorf("Enqueue with ID %q accepted", bad)
		}
	}
}

// TestOldestUnfinishedFromTheFirstKey: the age gauge reads the arrival
// of the oldest message still to deliver from its ID alone.
func TestOldestUnfinishedFromTheFirstKey(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC)}
	s := openTest(t, Options{Now: clock.Now})
	if _, ok, err := s.OldestUnfinished(); ok || err != nil {
		t.Fatalf("empty spool: %v %v", ok, err)
	}
	first := enqueue(t, s, "a@org.test", "Subject: x\r\n\r\nx\r\n", "b@dest.test")
	clock.Add(time.Hour)
	enqueue(t, s, "a@org.test", "Subject: x\r\n\r\nx\r\n", "b@dest.test")
	if at, ok, err := s.OldestUnfinished(); !ok || err != nil || !at.Equal(time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC)) {
		t.Errorf("oldest = %v %v %v", at, ok, err)
	}
	if _, _, err := s.RecordAttempt(first, Attempt{}, []RcptOutcome{{Address: "b@dest.test", Delivered: true}}, nil); err != nil {
		t.Fatal(err)
	}
	if at, ok, _ := s.OldestUnfinished(); !ok || !at.Equal(time.Date(2026, 3, 3, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("after the first finished: %v %v", at, ok)
	}
}
