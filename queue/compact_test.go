package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestCompactGivesTheSpaceBack: after a backlog is delivered and
// collected the file stays as large as the backlog made it; Compact
// brings it back near the live data, the records still kept survive, the
// spool stays locked against a second process throughout, and mail
// enqueued and read meanwhile is neither lost nor refused.
func TestCompactGivesTheSpaceBack(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC)}
	s := openTest(t, Options{Now: clock.Now, Retention: time.Hour})
	body := "Subject: backlog\r\n\r\n" + strings.Repeat("x", 100<<10) + "\r\n"
	var ids []string
	for range 120 {
		ids = append(ids, enqueue(t, s, "a@org.test", body, "b@dest.test"))
	}
	for _, id := range ids {
		if _, _, err := s.RecordAttempt(id, Attempt{}, []RcptOutcome{{Address: "b@dest.test", Delivered: true}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	clock.Add(2 * time.Hour)
	if n, err := s.GC(); err != nil || n != len(ids) {
		t.Fatalf("GC = %d, %v", n, err)
	}
	kept := enqueue(t, s, "a@org.test", "Subject: kept\r\n\r\nstill here\r\n", "c@dest.test")

	res, err := s.Compact(context.Background(), false)
	if err != nil || res.Skipped == "" {
		t.Fatalf("Compact of %d bytes with less than CompactMinFree free: %+v, %v", res.Before, res, err)
	}

	// Mail keeps coming in and being read while the file is swapped.
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	var during sync.Map
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				id, err := s.Enqueue(context.Background(), Envelope{From: "a@org.test", Recipients: []string{fmt.Sprintf("w%d-%d@dest.test", w, i)}},
					[]byte("Subject: during\r\n\r\nx\r\n"))
				if err != nil {
					errs <- err
					return
				}
				during.Store(id, true)
				if _, err := s.Get(kept); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	res, err = s.Compact(context.Background(), true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("during compaction: %v", err)
	}
	if err != nil || res.Skipped != "" {
		t.Fatalf("Compact: %+v, %v", res, err)
	}
	if res.Before < 10<<20 || res.After*4 > res.Before {
		t.Errorf("file %d bytes before, %d after: not given back", res.Before, res.After)
	}
	if body, err := s.Body(kept); err != nil || !strings.Contains(string(body), "still here") {
		t.Errorf("the kept message after compaction: %q, %v", body, err)
	}
	n := 0
	during.Range(func(k, _ any) bool {
		n++
		if _, err := s.Get(k.(string)); err != nil {
			t.Errorf("message enqueued during compaction: %v", err)
		}
		return true
	})
	if n != 40 {
		t.Errorf("%d messages enqueued during compaction, want 40", n)
	}
	// The spool is still this process's: a second one cannot open it.
	if _, err := Open(Options{Path: s.opts.Path, KeyFile: s.opts.KeyFile, LockTimeout: 50 * time.Millisecond}); !errors.Is(err, ErrLocked) {
		t.Errorf("a second process opened the compacted spool: %v", err)
	}
	if err := s.Check(); err != nil {
		t.Error(err)
	}
}

// BenchmarkCompactAfterDrain: a backlog of b.N×1000 messages of 10 KB
// is enqueued, delivered and collected, with 1,000 pending messages
// kept; it reports the file before and after compaction, the live data
// (the compacted file) and how long the spool was paused.
//
//	go test ./queue -run '^$' -bench CompactAfterDrain -benchtime 50x
func BenchmarkCompactAfterDrain(b *testing.B) {
	clock := &testClock{t: time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC)}
	dir := b.TempDir()
	s, err := Open(Options{Path: dir + "/spool.db", KeyFile: dir + "/spool.key", Now: clock.Now, Retention: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	body := []byte("Subject: backlog\r\n\r\n" + strings.Repeat("x", 10<<10) + "\r\n")
	ctx := context.Background()
	put := func(n int) []string {
		ids := make([]string, n)
		var wg sync.WaitGroup
		for w := range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += 50 {
					id, err := s.Enqueue(ctx, Envelope{From: "a@org.test", Recipients: []string{"b@dest.test"}}, body)
					if err != nil {
						b.Error(err)
						return
					}
					ids[i] = id
				}
			}()
		}
		wg.Wait()
		return ids
	}
	backlog := put(b.N * 1000)
	put(1000) // still pending
	for _, id := range backlog {
		if _, _, err := s.RecordAttempt(id, Attempt{}, []RcptOutcome{{Address: "b@dest.test", Delivered: true}}, nil); err != nil {
			b.Fatal(err)
		}
	}
	clock.Add(2 * time.Hour)
	if _, err := s.GC(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	res, err := s.Compact(ctx, true)
	b.StopTimer()
	if err != nil || res.Skipped != "" {
		b.Fatalf("%+v %v", res, err)
	}
	b.ReportMetric(float64(res.Before)/(1<<20), "MB-before")
	b.ReportMetric(float64(res.After)/(1<<20), "MB-after")
	b.ReportMetric(float64(res.Paused.Milliseconds()), "ms-paused")
}

// TestCompactDoesNotHandTheOldFileToAWaitingOpener: a second process
// waiting for the spool's lock while a compaction swaps the file must
// not end up holding the old, unlinked file (its changes would be lost):
// it times out as on any locked spool.
func TestCompactDoesNotHandTheOldFileToAWaitingOpener(t *testing.T) {
	s := openTest(t, Options{})
	enqueue(t, s, "a@org.test", "Subject: x\r\n\r\nx\r\n", "b@dest.test")
	got := make(chan error, 1)
	go func() {
		other, err := Open(Options{Path: s.opts.Path, KeyFile: s.opts.KeyFile, LockTimeout: 1500 * time.Millisecond})
		if err == nil {
			other.Close()
		}
		got <- err
	}()
	time.Sleep(200 * time.Millisecond) // the opener is waiting for the lock
	if _, err := s.Compact(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	if err := <-got; !errors.Is(err, ErrLocked) {
		t.Errorf("the waiting opener: %v, want ErrLocked", err)
	}
}
