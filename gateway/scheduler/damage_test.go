package scheduler

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/gateway/delivery"
	"github.com/sealgate/sealgate/queue"
)

// refuseAll refuses every recipient for good (a bounce follows).
type refuseAll struct{}

func (refuseAll) Deliver(_ context.Context, req delivery.Request) (queue.Attempt, []queue.RcptOutcome) {
	var out []queue.RcptOutcome
	for _, r := range req.Recipients {
		out = append(out, queue.RcptOutcome{Address: r, Permanent: true, Code: 550, Status: "5.1.1", Message: "550 5.1.1 no such user"})
	}
	return queue.Attempt{Destination: req.Domain}, out
}

// TestBounceOfADamagedBodyFile: a message whose body file is gone is
// refused by its destination; building the bounce reads the start of
// the body, finds the damage and quarantines the message — outside the
// spool's commit, so the spool goes on taking mail (it used to hang
// every commit after that).
func TestBounceOfADamagedBodyFile(t *testing.T) {
	dir := t.TempDir()
	st, err := queue.Open(queue.Options{Path: filepath.Join(dir, "spool.db"), KeyFile: filepath.Join(dir, "spool.key")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	body := "From: a@org.test\r\nSubject: big\r\n\r\n" + strings.Repeat("line of text line of text\r\n", 40000)
	id, err := st.Enqueue(context.Background(), queue.Envelope{From: "a@org.test", Recipients: []string{"b@dest.test"}}, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "bodies", id)); err != nil {
		t.Fatal(err)
	}
	s := New(Options{Store: st, Deliverer: refuseAll{}, MaxConcurrency: 1, MaxBytesInFlight: 10 << 20,
		DSN: func(m *queue.Message, _ []queue.Recipient, _ []byte) (queue.Envelope, []byte, error) {
			return queue.Envelope{Recipients: []string{m.Envelope.From}}, []byte("Subject: dsn\r\n\r\nx\r\n"), nil
		}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "the damaged message quarantined", func() bool {
		q, _ := st.Quarantined()
		return len(q) == 1 && q[0].ID == id
	})
	enqueued := make(chan error, 1)
	go func() {
		_, err := st.Enqueue(context.Background(), queue.Envelope{From: "x@org.test", Recipients: []string{"y@dest.test"}}, []byte("Subject: s\r\n\r\nhi\r\n"))
		enqueued <- err
	}()
	select {
	case err := <-enqueued:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the spool takes no more mail after the bounce of a damaged body: its committer is stuck")
	}
}
