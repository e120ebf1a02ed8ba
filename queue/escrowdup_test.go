package queue

import (
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// On a fleet's node, a sender's last wrong code (two events, two logAll
// calls in one transaction) must audit each event once, as on one node.
func TestSenderCodeVoidAuditedOnce(t *testing.T) {
	for _, fleet := range []bool{false, true} {
		t.Run(map[bool]string{false: "single", true: "fleet"}[fleet], func(t *testing.T) {
			clock := &testClock{t: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
			dir := t.TempDir()
			var mu sync.Mutex
			count := map[string]int{}
			opts := Options{Path: filepath.Join(dir, "spool.db"), KeyFile: filepath.Join(dir, "spool.key"), Now: clock.Now,
				AuditEscrow: func(_, _, rcpt string, events []EscrowEvent) [][]byte {
					mu.Lock()
					defer mu.Unlock()
					for _, ev := range events {
						count[ev.Kind+" "+ev.Detail]++
					}
					return [][]byte{[]byte(`{"type":"escrow"}`)}
				}}
			s, err := Open(opts)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			e, err := s.OpenEscrow(EscrowOptions{KeyFile: filepath.Join(dir, "escrow.key")})
			if err != nil {
				t.Fatal(err)
			}
			if fleet {
				e.shared = newBoltShared(t)
			}
			if _, _, err := e.Deposit(EscrowDeposit{QueueID: "q1", EnvelopeFrom: "dr@clinic.test", Recipient: "pat@mail.test"}, []byte("Subject: x\r\n\r\nresults\r\n")); err != nil {
				t.Fatal(err)
			}
			tok, err := e.IssueSenderLink("q1")
			if err != nil || tok == "" {
				t.Fatal(tok, err)
			}
			if _, _, err := e.IssueSenderCode(tok, "192.0.2.1"); err != nil {
				t.Fatal(err)
			}
			for range 5 {
				e.CheckSenderCode(tok, "not-the-code", "192.0.2.1")
			}
			mu.Lock()
			defer mu.Unlock()
			for k, n := range count {
				if n != 1 {
					t.Errorf("%q audited %d times", k, n)
				}
			}
		})
	}
}
