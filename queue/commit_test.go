package queue

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Close racing writers must answer every writer: committed, or
// ErrClosed. A writer left waiting for a committer that has gone would
// hang a session (and a shutdown) for good. What was answered with an ID
// is in the spool when it is opened again.
func TestCloseRacingEnqueueNeverHangs(t *testing.T) {
	const rounds, writers = 100, 16
	dir := t.TempDir()
	opts := Options{Path: filepath.Join(dir, "spool.db"), KeyFile: filepath.Join(dir, "spool.key")}
	for round := range rounds {
		s, err := Open(opts)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		var ids []string
		errs := make(chan error, writers)
		start := make(chan struct{})
		for range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for {
					id, err := s.Enqueue(context.Background(), Envelope{From: "a@o.test", Recipients: []string{"x@d.test"}}, []byte("b"))
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					ids = append(ids, id)
					mu.Unlock()
				}
			}()
		}
		close(start)
		closed := make(chan error, 1)
		go func() { closed <- s.Close() }()

		finished := make(chan struct{})
		go func() { wg.Wait(); close(finished) }()
		select {
		case <-finished:
		case <-time.After(20 * time.Second):
			t.Fatalf("round %d: writers still waiting 20s after Close", round)
		}
		if err := <-closed; err != nil {
			t.Fatalf("round %d: Close: %v", round, err)
		}
		close(errs)
		for err := range errs {
			if !errors.Is(err, ErrClosed) {
				t.Fatalf("round %d: Enqueue during Close = %v, want ErrClosed", round, err)
			}
		}

		s, err = Open(opts)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			if _, err := s.Get(id); err != nil {
				t.Fatalf("round %d: %s was acknowledged but is not in the spool: %v", round, id, err)
			}
		}
		if err := s.Check(); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		s.Close()
	}
}

// After Close every operation reports ErrClosed; none hangs or panics.
func TestOperationsAfterClose(t *testing.T) {
	s := openTest(t, Options{})
	id := enqueue(t, s, "a@o.test", "b", "x@d.test")
	s.Close()
	for name, op := range map[string]func() error{
		"Enqueue": func() error {
			_, err := s.Enqueue(context.Background(), Envelope{Recipients: []string{"x@d.test"}}, []byte("b"))
			return err
		},
		"Hold":   func() error { return s.Hold(id) },
		"Delete": func() error { return s.Delete(id) },
		"Get":    func() error { _, err := s.Get(id); return err },
		"List":   func() error { _, err := s.List(); return err },
		"GC":     func() error { _, err := s.GC(); return err },
		"ObserveTLS": func() error {
			return s.ObserveTLS(TLSObservation{Domain: "d.test", TLSVersion: "TLS1.3"})
		},
	} {
		if err := op(); !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
}

// lazyAttempt records a delivered attempt in a goroutine once the
// committer waits for company (the wait made long), and returns the
// channel its error arrives on.
func lazyAttempt(t *testing.T, s *Store, id string) chan error {
	t.Helper()
	done := recordDelivered(s, id)
	for i := 0; s.lazyWaiting.Load() == 0; i++ {
		if i == 1000 {
			t.Fatal("the attempt's record never reached the committer")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("a lazy record was committed alone at once (%v)", err)
	default:
	}
	return done
}

// A delivery attempt's record waits for the next message's intake and
// shares its transaction: a lone client pays one commit per message, not
// two.
func TestAttemptRecordSharesTheNextIntakesCommit(t *testing.T) {
	s := openTest(t, Options{})
	id := enqueue(t, s, "a@o.test", "Subject: s\r\n\r\nb\r\n", "x@d.test")
	before := s.batches.Load()
	done := lazyAttempt(t, s, id)

	enqueue(t, s, "a@o.test", "Subject: t\r\n\r\nb\r\n", "y@d.test")
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the attempt's record was not committed with the intake that followed it")
	}
	if got := s.batches.Load() - before; got != 1 {
		t.Errorf("%d transactions for an attempt record and an intake, want 1", got)
	}
	wantDelivered(t, s, id)
}

// Close while a record waits for company commits it: the attempt is on
// record when the spool is opened again.
func TestCloseCommitsAWaitingAttemptRecord(t *testing.T) {
	s, id, reopen := spoolWithOneMessage(t)
	done := lazyAttempt(t, s, id)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("the waiting record: %v", err)
	}
	s = reopen()
	defer s.Close()
	wantDelivered(t, s, id)
}

// With no mail coming in (a backlog draining after a restart), a record
// does not wait for company that is not coming: it would hold the
// delivery's slot for nothing.
func TestAttemptRecordWithoutIntakeDoesNotWait(t *testing.T) {
	s, id, reopen := spoolWithOneMessage(t)
	s.Close()
	s = reopen()
	defer s.Close()
	done := recordDelivered(s, id)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a record waited for an intake although none had come")
	}
}

// recordDelivered records, in a goroutine, that x@d.test of id was
// delivered, with records made to wait long for company; the returned
// channel gets its error.
func recordDelivered(s *Store, id string) chan error {
	s.lazyWait = time.Hour
	done := make(chan error, 1)
	go func() {
		_, _, err := s.RecordAttempt(id, Attempt{Destination: "d.test"}, []RcptOutcome{{Address: "x@d.test", Delivered: true, Code: 250}}, nil)
		done <- err
	}()
	return done
}

// spoolWithOneMessage is a spool holding one message to x@d.test, and a
// function that opens it again once closed.
func spoolWithOneMessage(t *testing.T) (*Store, string, func() *Store) {
	t.Helper()
	dir := t.TempDir()
	opts := Options{Path: filepath.Join(dir, "spool.db"), KeyFile: filepath.Join(dir, "spool.key")}
	reopen := func() *Store {
		s, err := Open(opts)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := reopen()
	return s, enqueue(t, s, "a@o.test", "Subject: s\r\n\r\nb\r\n", "x@d.test"), reopen
}

func wantDelivered(t *testing.T, s *Store, id string) {
	t.Helper()
	m, err := s.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if m.Recipients[0].State != StateDelivered {
		t.Errorf("recipient is %s, want delivered", m.Recipients[0].State)
	}
}
