package gateway_test

// Records tell the truth (issue 13 part 2): what the spool keeps of an
// attempt is what happened, in the destination's own words.

import (
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testutil"
	"github.com/sealgate/sealgate/queue"
)

// TestRecordedReplyIsTheDestinations: the reply recorded for the attempt
// and for each recipient is the one the destination gave to the final
// dot, queue ID and all — not a reply of our own making.
func TestRecordedReplyIsTheDestinations(t *testing.T) {
	e := newE2E(t, "")
	sink := e.destination("dest.test", "127.0.0.2", testutil.SinkOptions{TLS: true})
	id := e.send("alice@org.test", []string{"bob@dest.test", "carol@dest.test"}, message("reply", "Body."))

	got := sink.WaitMessages(t, 1, 20*time.Second)[0]
	m := e.waitState(id, "carol@dest.test", queue.StateDelivered)
	m = e.waitState(id, "bob@dest.test", queue.StateDelivered)
	if !strings.Contains(got.Reply, "queued as "+got.QueueID) || got.QueueID == "" {
		t.Fatalf("the sink's reply %q does not name its queue ID %q", got.Reply, got.QueueID)
	}
	a := lastAttempt(m)
	if a == nil || a.Reply != got.Reply {
		t.Errorf("attempt reply %+v, want the destination's %q", a, got.Reply)
	}
	for _, r := range m.Recipients {
		if r.LastError != got.Reply || r.LastCode != 250 || r.Status != "2.0.0" {
			t.Errorf("%s: recorded %d %s %q, want the destination's %q", r.Address, r.LastCode, r.Status, r.LastError, got.Reply)
		}
	}
}
