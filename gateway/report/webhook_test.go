package report

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/sealgate/sealgate/queue"
)

// TestWebhookEventsFromChanges: each kind of change makes the event an
// integrator subscribed to, routed to the endpoints that asked for it.
func TestWebhookEventsFromChanges(t *testing.T) {
	w := NewWebhooks([]Endpoint{{URL: "https://a.test/h", Events: []string{"delivered", "deferred", "held"}},
		{URL: "https://b.test/h", Events: []string{"bounced", "dropped", "escrow-opened", "escrow-replied"}}})
	now := time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC)
	m := &queue.Message{ID: "q1", Envelope: queue.Envelope{MessageID: "<m@x>"}, Recipients: []queue.Recipient{
		{Address: "ok@d.test", State: queue.StateDelivered, Chain: []string{"tls-verified"}},
		{Address: "later@d.test", State: queue.StateDeferred, Status: "4.2.0", LastError: "451 mailbox busy"},
		{Address: "no@d.test", State: queue.StateBounced, Status: "5.1.1", LastError: "550 no such user"},
		{Address: "drop@d.test", State: queue.StateDropped},
		{Address: "wait@d.test", State: queue.StateQueued},
	}}
	att := &queue.Attempt{MXHost: "mx.d.test", TLSVersion: "TLS1.3", CertVerified: true, Recipients: []string{"ok@d.test", "later@d.test", "no@d.test"}}
	evs := w.FromChange(m, []queue.Event{
		{Time: now, Kind: "attempt", Attempt: att},
		{Time: now, Kind: "bounced", Detail: "no@d.test: 550 no such user"},
		{Time: now, Kind: "dropped", Detail: "drop@d.test: chain ends in drop"},
		{Time: now, Kind: "held", Detail: "held by admin"},
	}, false)
	got := map[string][]string{}
	for _, e := range evs {
		var body WebhookEvent
		if err := json.Unmarshal(e.Data, &body); err != nil || body.ID != e.ID || body.Type != e.Type || body.QueueID != "q1" {
			t.Errorf("event %+v: %v", body, err)
		}
		got[e.URL] = append(got[e.URL], e.Type+" "+body.Recipient)
	}
	wantA := []string{"delivered ok@d.test", "deferred later@d.test", "held later@d.test", "held wait@d.test"}
	wantB := []string{"bounced no@d.test", "dropped drop@d.test"}
	if !slices.Equal(got["https://a.test/h"], wantA) || !slices.Equal(got["https://b.test/h"], wantB) {
		t.Errorf("routed %v", got)
	}
	esc := w.FromEscrow("q1", "e1", "ok@d.test", []queue.EscrowEvent{{Time: now, Kind: queue.EscrowCodeSent}, {Time: now, Kind: queue.EscrowOpened}, {Time: now, Kind: queue.EscrowReplied}})
	if len(esc) != 2 || esc[0].Type != "escrow-opened" || esc[1].Type != "escrow-replied" || esc[0].URL != "https://b.test/h" {
		t.Errorf("escrow events %+v", esc)
	}
	if NewWebhooks(nil) != nil {
		t.Error("no endpoints, yet an event maker")
	}
}

// TestSign: the signature is HMAC-SHA256 over "t.body" (a vector
// computed with openssl: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac k).
func TestSign(t *testing.T) {
	got := Sign([]byte("k"), []byte(`{"a":1}`), time.Unix(1700000000, 0))
	const want = "t=1700000000,v1=1b6ad1bc9bf48c52ce01939866d5877c6cc4e87ddad27e16673cb8c4964394a3"
	if got != want {
		t.Fatalf("Sign = %q, want %q", got, want)
	}
}
