package report

import (
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/queue"
)

// An escrowed recipient's line says whether they had opened the message
// when the receipt was written, in words and in the JSON facts; without
// word from the escrow store it says neither.
func TestReceiptSaysWhetherEscrowWasOpened(t *testing.T) {
	at := time.Date(2026, 3, 3, 10, 0, 0, 0, time.UTC)
	m := &queue.Message{ID: "q1", Envelope: queue.Envelope{From: "dr@clinic.test"}, DoneAt: at, Recipients: []queue.Recipient{
		{Address: "read@x.test", State: queue.StateDelivered, Chain: []string{"escrow"}},
		{Address: "unread@x.test", State: queue.StateDelivered, Chain: []string{"escrow"}},
		{Address: "tls@x.test", State: queue.StateDelivered, Chain: []string{"tls"}},
	}}
	opened := EscrowOpened{"read@x.test": at.Add(-time.Minute), "unread@x.test": {}, "tls@x.test": at}
	rec := ReceiptOf(m, opened)
	for _, r := range rec.Recipients {
		switch r.Recipient {
		case "read@x.test":
			if r.EscrowOpened == nil || !*r.EscrowOpened || !r.EscrowOpenedAt.Equal(at.Add(-time.Minute)) {
				t.Errorf("read: %+v", r)
			}
			if d := describe(r); !strings.Contains(d, "opened by the recipient Tue, 03 Mar 2026 09:59:00 +0000") {
				t.Errorf("read: %q", d)
			}
		case "unread@x.test":
			if r.EscrowOpened == nil || *r.EscrowOpened {
				t.Errorf("unread: %+v", r)
			}
			if d := describe(r); !strings.Contains(d, "had not opened it yet") {
				t.Errorf("unread: %q", d)
			}
		case "tls@x.test": // not escrowed: nothing said of the portal
			if r.EscrowOpened != nil {
				t.Errorf("tls: %+v", r)
			}
		}
	}
	for _, r := range ReceiptOf(m, nil).Recipients {
		if r.EscrowOpened != nil || (r.Method == "escrow" && !strings.Contains(describe(r), "the access log records when it is opened")) {
			t.Errorf("without the escrow store's word: %+v %q", r, describe(r))
		}
	}
}
