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
