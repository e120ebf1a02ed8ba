package queue

import (
	"context"
	"errors"

	bolt "go.etcd.io/bbolt"
)

// ReceiptFunc builds the security receipt of a finished message: the
// envelope and message of a mail to its sender.
type ReceiptFunc func(m *Message) (Envelope, []byte, error)

// SendReceipt spools the security receipt of message id when it is due:
// the message is finished, its policy asked for one, none was sent yet,
// and it has a sender to tell (not the null sender, not a report of
// ours). The receipt goes with the null reverse-path and is marked as
// ours, so it causes neither a DSN nor a receipt. It returns the
// receipt's ID, "" when none was due.
func (s *Store) SendReceipt(id string, build ReceiptFunc) (string, error) {
	var receiptID string
	_, err := s.update(id, func(tx *bolt.Tx, m *Message) error {
		receiptID = ""
		if !receiptDue(m) {
			return nil
		}
		now := s.now()
		env, body, err := build(m)
		if err != nil {
			m.Events = append(m.Events, Event{Time: now, Kind: "receipt", Detail: "could not build the security receipt: " + err.Error()})
			m.ReceiptID = "-"
			return nil
		}
		env.IsDSN, env.From = true, ""
		if receiptID, err = s.putNew(tx, env, body, "security receipt for "+m.ID); err != nil {
			return err
		}
		m.ReceiptID = receiptID
		m.Events = append(m.Events, Event{Time: now, Kind: "receipt", Detail: "security receipt " + receiptID + " queued to " + m.Envelope.From})
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return "", nil
	}
	return receiptID, err
}

func receiptDue(m *Message) bool {
	return finished(m) && m.Envelope.Receipt != "" && m.ReceiptID == "" && m.Envelope.From != "" && !m.Envelope.IsDSN
}

// PendingReceipts lists the finished messages whose receipt is due
// (one that a crash kept from being sent after the last attempt).
func (s *Store) PendingReceipts(ctx context.Context) ([]string, error) {
	msgs, err := s.List()
	if err != nil {
		return nil, err
	}
	var ids []string
	for i := range msgs {
		if receiptDue(&msgs[i]) {
			ids = append(ids, msgs[i].ID)
		}
	}
	return ids, ctx.Err()
}
