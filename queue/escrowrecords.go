package queue

import (
	"encoding/json"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// The escrow store's records: sealing under a message's own key, and
// reading and writing messages and recipients inside a transaction.

// sealWith seals plain under a key of its own (a message key).
func sealWith(key []byte, kind, id string, plain []byte) ([]byte, error) {
	sl, err := newSealer(key)
	if err != nil {
		return nil, err
	}
	return sl.seal(kind, id, plain), nil
}

func (e *Escrow) putMessage(tx escrowTx, b KVBucket, m *EscrowMessage) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return b.Put([]byte(m.ID), e.seal.seal(kindEscrowMsg, m.ID, data))
}

func (e *Escrow) getMessage(tx escrowTx, id string) (*EscrowMessage, error) {
	v := tx.Bucket(bucketEscrowMsgs).Get([]byte(id))
	if v == nil {
		return nil, ErrEscrowGone
	}
	plain, err := e.seal.open(kindEscrowMsg, id, v)
	if err != nil {
		return nil, fmt.Errorf("%w: escrow message %s: %v", errCorrupt, id, err)
	}
	var m EscrowMessage
	if err := json.Unmarshal(plain, &m); err != nil {
		return nil, fmt.Errorf("%w: escrow message %s: %v", errCorrupt, id, err)
	}
	return &m, nil
}

func (e *Escrow) putRecipient(tx escrowTx, r *EscrowRecipient) error {
	if err := e.auditAccess(tx, r); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return e.writeRecipient(tx, r)
}

// writeRecipient stores r as it is (putRecipient audits first).
func (e *Escrow) writeRecipient(tx escrowTx, r *EscrowRecipient) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketEscrowRcpts).Put([]byte(r.ID), e.seal.seal(kindEscrowRcpt, r.ID, data))
}

func (e *Escrow) getRecipient(tx escrowTx, id string) (*EscrowRecipient, error) {
	v := tx.Bucket(bucketEscrowRcpts).Get([]byte(id))
	if v == nil {
		return nil, ErrEscrowGone
	}
	plain, err := e.seal.open(kindEscrowRcpt, id, v)
	if err != nil {
		return nil, fmt.Errorf("%w: escrow recipient %s: %v", errCorrupt, id, err)
	}
	var r EscrowRecipient
	if err := json.Unmarshal(plain, &r); err != nil {
		return nil, fmt.Errorf("%w: escrow recipient %s: %v", errCorrupt, id, err)
	}
	return &r, nil
}

// byToken finds the recipient and message of a token inside tx;
// ErrEscrowGone when the token is unknown.
func (e *Escrow) byToken(tx escrowTx, token string) (*EscrowRecipient, *EscrowMessage, error) {
	id := tx.Bucket(bucketEscrowTokens).Get([]byte(tokenHash(token)))
	if id == nil {
		return nil, nil, ErrEscrowGone
	}
	r, err := e.getRecipient(tx, string(id))
	if err != nil {
		return nil, nil, err
	}
	m, err := e.getMessage(tx, r.MessageID)
	if err != nil {
		return nil, nil, err
	}
	return r, m, nil
}

// auditAccess chains the access events r gained since the last write
// into the audit log and the webhook outbox, in the same transaction
// (Options.AuditEscrow, Options.WebhooksEscrow); with a shared escrow
// store, in this node's spool right after the shared commit, and only
// once they are there is r marked as audited (tx.ack, in a shared
// transaction of its own): a node that stops in between leaves them
// unmarked, and the leader's sweep audits them (at least once, never
// lost).
func (e *Escrow) auditAccess(tx escrowTx, r *EscrowRecipient) error {
	o := e.s.opts
	from := r.AuditedEvents
	if tx.acked != nil {
		from = max(from, tx.acked(r.ID))
	}
	if (o.AuditEscrow == nil && o.WebhooksEscrow == nil) || from >= len(r.Events) {
		return nil
	}
	queueID := ""
	if m, err := e.getMessage(tx, r.MessageID); err == nil {
		queueID = m.QueueID
	}
	events := slices.Clone(r.Events[from:])
	err := tx.spool(func(btx *bolt.Tx) error {
		if o.AuditEscrow != nil {
			if err := e.s.appendAudit(btx, o.AuditEscrow(queueID, r.MessageID, r.Address, events)); err != nil {
				return err
			}
		}
		if o.WebhooksEscrow != nil {
			return e.s.putWebhooks(btx, o.WebhooksEscrow(queueID, r.MessageID, r.Address, events))
		}
		return nil
	})
	if err != nil {
		return err
	}
	if tx.ack != nil {
		tx.ack(r.ID, len(r.Events))
		return nil
	}
	r.AuditedEvents = len(r.Events)
	return nil
}
