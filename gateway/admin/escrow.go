package admin

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sealgate/sealgate/internal/mailtext"
	"github.com/sealgate/sealgate/queue"
)

// The escrow side of the admin: list, show and revoke escrowed
// messages, and the access log of one spool message for queue show.
// Nothing here ever reads an escrowed message's content, its wrapped
// key, its link hashes or a recipient's code: EscrowRecord has no field
// for them.

// Errors of the escrow operations. An unknown ID is queue.ErrEscrowGone.
var (
	// ErrEscrowOff: the running server does not provide escrow
	// (escrow.enabled off or no portal.public_url), so it has no escrow
	// store open to answer from.
	ErrEscrowOff = errors.New("escrow is off on the running server (escrow.enabled, portal.public_url)")
	// ErrNoEscrowRecipient: revoke named a recipient the message was
	// not escrowed for.
	ErrNoEscrowRecipient = errors.New("no such recipient of the escrowed message")
)

// RevokedBy is who the access log names for a revocation through the
// admin API or the CLI.
const RevokedBy = "admin"

// EscrowStore is what the escrow operations need of the escrow store;
// *queue.Escrow implements it. Show and Revoke take a message ID or an
// access record ID ("<message>.<n>") and return an error matching
// queue.ErrEscrowGone when there is none; ForQueueID returns nothing
// for a spool message that was not escrowed.
type EscrowStore interface {
	List() ([]queue.EscrowEntry, error)
	Show(id string) ([]queue.EscrowEntry, error)
	Revoke(id, by string) error
	ForQueueID(queueID string) ([]queue.EscrowEntry, error)
}

// EscrowOps are the escrow operations an admin can run. EscrowOf gives
// them over the escrow store itself (the server is stopped);
// AdminClient.Escrow over the admin API of a running server. Show and
// Revoke take a message ID (every recipient) or an access record ID
// (one recipient) and fail with queue.ErrEscrowGone for an unknown one;
// Revoke with a recipient address narrows a message ID to that
// recipient (ErrNoEscrowRecipient when it has none such) and returns
// the records as they are after it. List leaves the access logs out.
type EscrowOps interface {
	List() ([]EscrowRecord, error)
	Show(id string) ([]EscrowRecord, error)
	Revoke(id, recipient string) ([]EscrowRecord, error)
	ForQueueID(queueID string) ([]EscrowRecord, error)
}

// EscrowRecord is what an admin sees of one recipient's access to an
// escrowed message: metadata and the access log, never the content.
type EscrowRecord struct {
	ID           string    `json:"id"` // the access record, <message>.<n>
	MessageID    string    `json:"message_id"`
	QueueID      string    `json:"queue_id"`
	EnvelopeFrom string    `json:"envelope_from"`
	Sender       string    `json:"sender"` // the From header
	Recipient    string    `json:"recipient"`
	Created      time.Time `json:"created"`
	Expires      time.Time `json:"expires"`
	Opened       bool      `json:"opened"`
	OpenedAt     time.Time `json:"opened_at,omitzero"`
	// State is "active", "revoked" (the message, or this recipient's
	// access) or "expired".
	State     string              `json:"state"`
	Revoked   time.Time           `json:"revoked,omitzero"`
	RevokedBy string              `json:"revoked_by,omitempty"`
	Destroyed time.Time           `json:"destroyed,omitzero"` // content and key removed
	Events    []queue.EscrowEvent `json:"events,omitempty"`
}

// escrowRecord turns a store entry into what an admin may see.
func escrowRecord(en queue.EscrowEntry, now time.Time, withEvents bool) EscrowRecord {
	m, r := en.Message, en.Recipient
	rec := EscrowRecord{ID: r.ID, MessageID: m.ID, QueueID: m.QueueID, EnvelopeFrom: m.EnvelopeFrom, Sender: m.Sender,
		Recipient: r.Address, Created: m.Created, Expires: m.Expires, Opened: !r.Opened.IsZero(), OpenedAt: r.Opened,
		State: m.State(now), Revoked: m.Revoked, RevokedBy: m.RevokedBy, Destroyed: m.Destroyed}
	if rec.State == "active" && accessRevoked(r.Events) {
		rec.State = "revoked"
	}
	if withEvents {
		rec.Events = r.Events
	}
	return rec
}

// accessRevoked reports whether a recipient's own access was revoked
// and no link has been issued to them since.
func accessRevoked(events []queue.EscrowEvent) bool {
	revoked := false
	for _, e := range events {
		switch e.Kind {
		case queue.EscrowRevoked:
			revoked = true
		case queue.EscrowLinkIssued:
			revoked = false
		}
	}
	return revoked
}

// escrowDirect runs the escrow operations on the store itself.
type escrowDirect struct {
	store EscrowStore
	now   func() time.Time
}

// EscrowOf gives the escrow operations over the escrow store itself; a
// nil store is a spool that never held escrowed mail.
func EscrowOf(store EscrowStore) EscrowOps {
	if store == nil {
		return noEscrow{}
	}
	return &escrowDirect{store: store, now: time.Now}
}

func (d *escrowDirect) records(entries []queue.EscrowEntry, err error, withEvents bool) ([]EscrowRecord, error) {
	if err != nil {
		return nil, err
	}
	now := d.now()
	out := make([]EscrowRecord, 0, len(entries))
	for _, en := range entries {
		out = append(out, escrowRecord(en, now, withEvents))
	}
	return out, nil
}

func (d *escrowDirect) List() ([]EscrowRecord, error) {
	entries, err := d.store.List()
	return d.records(entries, err, false)
}

func (d *escrowDirect) Show(id string) ([]EscrowRecord, error) {
	entries, err := d.store.Show(id)
	return d.records(entries, err, true)
}

func (d *escrowDirect) ForQueueID(queueID string) ([]EscrowRecord, error) {
	entries, err := d.store.ForQueueID(queueID)
	return d.records(entries, err, true)
}

func (d *escrowDirect) Revoke(id, recipient string) ([]EscrowRecord, error) {
	entries, err := d.store.Show(id)
	if err != nil {
		return nil, err
	}
	target := id
	if recipient != "" {
		if target, err = recipientID(entries, recipient); err != nil {
			return nil, fmt.Errorf("%s: %w", id, err)
		}
	}
	if err := d.store.Revoke(target, RevokedBy); err != nil {
		return nil, err
	}
	return d.Show(target)
}

// recipientID finds the access record of an address among a message's
// records: the canonical form first, then one that differs only in
// case (a local part is case-sensitive in principle, rarely in fact).
func recipientID(entries []queue.EscrowEntry, address string) (string, error) {
	addr, _, err := mailtext.CanonicalAddress(address)
	if err != nil {
		return "", fmt.Errorf("%w: %q is not an address", ErrNoEscrowRecipient, address)
	}
	var folded []string
	for _, en := range entries {
		if en.Recipient.Address == addr {
			return en.Recipient.ID, nil
		}
		if strings.EqualFold(en.Recipient.Address, addr) {
			folded = append(folded, en.Recipient.ID)
		}
	}
	if len(folded) == 1 {
		return folded[0], nil
	}
	return "", fmt.Errorf("%w: %s", ErrNoEscrowRecipient, addr)
}

// noEscrow is a spool without an escrow store: nothing to list, every
// ID unknown.
type noEscrow struct{}

func (noEscrow) List() ([]EscrowRecord, error)                 { return nil, nil }
func (noEscrow) Show(string) ([]EscrowRecord, error)           { return nil, queue.ErrEscrowGone }
func (noEscrow) Revoke(string, string) ([]EscrowRecord, error) { return nil, queue.ErrEscrowGone }
func (noEscrow) ForQueueID(string) ([]EscrowRecord, error)     { return nil, nil }
