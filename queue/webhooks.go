package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The webhook outbox.
//
// An event for an integrator is put in the outbox in the transaction of
// the change it reports (like the audit log), once per subscribed
// endpoint, so a crash or a restart loses none and a retry never makes a
// second one: the dispatcher (gateway/report) posts what is due and
// removes what an endpoint took.

var bucketWebhooks = []byte("webhooks") // seq (8 bytes) → sealed WebhookDelivery

const kindWebhook = "webhook"

// WebhookEvent is one event for one endpoint, as the node's callback
// makes it: Data is the JSON body (its id the same on every try).
type WebhookEvent struct {
	URL  string
	ID   string
	Type string
	Data []byte
}

// WebhookFunc makes the webhook events of the events a change of m
// added (as AuditFunc does for the audit log).
type WebhookFunc func(m *Message, events []Event, finished bool) []WebhookEvent

// WebhookEscrowFunc makes the webhook events of an escrowed
// recipient's access events.
type WebhookEscrowFunc func(queueID, escrowID, recipient string, events []EscrowEvent) []WebhookEvent

// WebhookDelivery is an outbox entry: one event still to post to one
// endpoint.
type WebhookDelivery struct {
	Seq         uint64          `json:"seq"`
	URL         string          `json:"url"`
	EventID     string          `json:"event_id"`
	Type        string          `json:"type"`
	Body        json.RawMessage `json:"body"`
	Created     time.Time       `json:"created"`
	Attempts    int             `json:"attempts"`
	NextAttempt time.Time       `json:"next_attempt"`
	LastError   string          `json:"last_error,omitempty"`
}

// putWebhooks adds events to the outbox inside tx.
func (s *Store) putWebhooks(tx *bolt.Tx, events []WebhookEvent) error {
	if len(events) == 0 {
		return nil
	}
	b, err := tx.CreateBucketIfNotExists(bucketWebhooks)
	if err != nil {
		return err
	}
	now := s.now()
	for _, e := range events {
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		d := WebhookDelivery{Seq: seq, URL: e.URL, EventID: e.ID, Type: e.Type, Body: e.Data, Created: now, NextAttempt: now}
		if err := s.putWebhook(b, &d); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) putWebhook(b *bolt.Bucket, d *WebhookDelivery) error {
	data, err := json.Marshal(d)
	if err != nil {
		return err
	}
	k := auditKey(d.Seq)
	return b.Put(k, s.seal.seal(kindWebhook, string(k), data))
}

// DueWebhooks returns at most limit outbox entries due at now, oldest
// first, and when the next one that is not due yet is (zero: none).
func (s *Store) DueWebhooks(now time.Time, limit int) ([]WebhookDelivery, time.Time, error) {
	var due []WebhookDelivery
	var next time.Time
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketWebhooks)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			plain, err := s.seal.open(kindWebhook, string(k), v)
			if err != nil {
				s.logger.Error("webhook outbox entry does not open; left in place", "key", fmt.Sprintf("%x", k), "err", err)
				return nil
			}
			var d WebhookDelivery
			if err := json.Unmarshal(plain, &d); err != nil {
				return nil
			}
			if d.NextAttempt.After(now) {
				if next.IsZero() || d.NextAttempt.Before(next) {
					next = d.NextAttempt
				}
				return nil
			}
			if len(due) < limit {
				due = append(due, d)
			}
			return nil
		})
	})
	return due, next, err
}

// WebhookDone removes an entry the endpoint took (or that was given up).
func (s *Store) WebhookDone(seq uint64) error {
	return s.commit(context.Background(), 0, func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketWebhooks); b != nil {
			return b.Delete(auditKey(seq))
		}
		return nil
	})
}

// WebhookFailed records a failed try and when to try again.
func (s *Store) WebhookFailed(d WebhookDelivery, next time.Time, why string) error {
	return s.commit(context.Background(), 0, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketWebhooks)
		if b == nil || b.Get(auditKey(d.Seq)) == nil {
			return nil
		}
		d.Attempts++
		d.NextAttempt, d.LastError = next, why
		return s.putWebhook(b, &d)
	})
}
