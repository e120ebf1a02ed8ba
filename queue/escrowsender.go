package queue

import (
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"
)

// The sender's link: revocation by the sender.
//
// With escrow.sender_receipt the sender of an escrowed message gets one
// receipt with a link of its own: 256 random bits, kept only as its
// SHA-256, like a recipient's. Behind it the sender proves they own the
// message's envelope sender address with a one-time code mailed there
// (the same rules as a recipient's code: CodeTTL, CodeTries,
// CodesPerHour), and may then revoke the message for every recipient
// (content and key destroyed, as an admin's revocation) or end one
// recipient's access. The sender's steps are logged in every
// recipient's access log, so that one log tells the story of each
// recipient's copy.

var bucketEscrowSenderTokens = []byte("escrow-sender-tokens") // SHA-256(token) → message ID

// Events of the sender's link, in every recipient's access log.
const (
	EscrowSenderLinkIssued = "sender link issued"
	EscrowSenderCodeSent   = "sender code sent"
	EscrowSenderCodeFailed = "sender code failed"
	EscrowSenderVerified   = "sender verified"
	escrowRevokedBySender  = "sender"
)

// EscrowSenderView is what the sender's page shows of a message.
type EscrowSenderView struct {
	Message    EscrowMessage
	Recipients []EscrowRecipient
}

// IssueSenderLink makes the sender's link of the message escrowed from
// spool message queueID and returns its token — once: a message that
// already has a sender link, or has no envelope sender to prove, gets
// "" (so that a message's several notices make one receipt).
func (e *Escrow) IssueSenderLink(queueID string) (string, error) {
	token := NewEscrowToken()
	var issued bool
	err := e.update(0, func(tx escrowTx) error {
		issued = false
		id := tx.Bucket(bucketEscrowQueue).Get([]byte(queueID))
		if id == nil {
			return ErrEscrowGone
		}
		m, err := e.getMessage(tx, string(id))
		if err != nil {
			return err
		}
		now := e.now()
		if m.SenderTokenHash != "" || m.EnvelopeFrom == "" || m.State(now) != "active" {
			return nil
		}
		m.SenderTokenHash = tokenHash(token)
		if err := tx.Bucket(bucketEscrowSenderTokens).Put([]byte(m.SenderTokenHash), []byte(m.ID)); err != nil {
			return err
		}
		if err := e.logAll(tx, m, EscrowEvent{Time: now, Kind: EscrowSenderLinkIssued, Detail: "receipt to " + m.EnvelopeFrom}); err != nil {
			return err
		}
		issued = true
		return e.putMessage(tx, tx.Bucket(bucketEscrowMsgs), m)
	})
	if err != nil || !issued {
		return "", err
	}
	return token, nil
}

// logAll adds ev to the access log of every recipient of m.
func (e *Escrow) logAll(tx escrowTx, m *EscrowMessage, ev EscrowEvent) error {
	for _, id := range m.Recipients {
		r, err := e.getRecipient(tx, id)
		if err != nil {
			return err
		}
		r.Events = append(r.Events, ev)
		if err := e.putRecipient(tx, r); err != nil {
			return err
		}
	}
	return nil
}

// updateBySender runs fn on the message of an active sender token and
// stores the message record as fn leaves it, whatever fn returns (a
// wrong code must count). fn may run more than once (see commit).
func (e *Escrow) updateBySender(token string, fn func(tx escrowTx, m *EscrowMessage, now time.Time) error) error {
	var result error
	err := e.update(0, func(tx escrowTx) error {
		m, err := e.bySenderToken(tx, token)
		if err != nil {
			return err
		}
		now := e.now()
		if m.State(now) != "active" {
			return ErrEscrowGone
		}
		result = fn(tx, m, now)
		return e.putMessage(tx, tx.Bucket(bucketEscrowMsgs), m)
	})
	if err != nil {
		return err
	}
	return result
}

func (e *Escrow) bySenderToken(tx escrowTx, token string) (*EscrowMessage, error) {
	id := tx.Bucket(bucketEscrowSenderTokens).Get([]byte(tokenHash(token)))
	if id == nil {
		return nil, ErrEscrowGone
	}
	return e.getMessage(tx, string(id))
}

// SenderLookup returns the message of a sender token with its
// recipients' records. An unknown token, and one whose message has
// expired or was revoked, are ErrEscrowGone alike.
func (e *Escrow) SenderLookup(token string) (*EscrowSenderView, error) {
	var out *EscrowSenderView
	err := e.view(func(tx escrowTx) error {
		m, err := e.bySenderToken(tx, token)
		if err != nil {
			return err
		}
		if m.State(e.now()) != "active" {
			return ErrEscrowGone
		}
		out = &EscrowSenderView{Message: *m}
		for _, id := range m.Recipients {
			r, err := e.getRecipient(tx, id)
			if err != nil {
				return err
			}
			out.Recipients = append(out.Recipients, *r)
		}
		return nil
	})
	return out, err
}

// IssueSenderCode makes a new one-time code for the sender of a sender
// token's message and returns it with the address to mail it to (the
// envelope sender); ErrEscrowRateLimited past CodesPerHour.
func (e *Escrow) IssueSenderCode(token, client string) (code, address string, err error) {
	n, _ := rand.Int(rand.Reader, big.NewInt(100_000_000))
	code = fmt.Sprintf("%0*d", CodeDigits, n)
	var salt [16]byte
	rand.Read(salt[:])
	err = e.updateBySender(token, func(tx escrowTx, m *EscrowMessage, now time.Time) error {
		if err := e.newCode(&m.SenderCodesSent, &m.SenderCode, salt[:], code, now); err != nil {
			if lerr := e.logAll(tx, m, EscrowEvent{Time: now, Kind: EscrowSenderCodeFailed, Client: client, Detail: "code request refused: too many in the last hour"}); lerr != nil {
				return lerr
			}
			return err
		}
		address = m.EnvelopeFrom
		return e.logAll(tx, m, EscrowEvent{Time: now, Kind: EscrowSenderCodeSent, Client: client})
	})
	if err != nil {
		return "", "", err
	}
	return code, address, nil
}

// CheckSenderCode checks the sender's code as CheckCode checks a
// recipient's: the right one is spent and "sender verified" logged; a
// wrong one counts, and the last allowed voids it.
func (e *Escrow) CheckSenderCode(token, code, client string) (left int, err error) {
	code = strings.TrimSpace(code)
	err = e.updateBySender(token, func(tx escrowTx, m *EscrowMessage, now time.Time) error {
		tries, err := e.checkCode(&m.SenderCode, code, now)
		if err != nil {
			var events []EscrowEvent
			left = e.codeEvents(&events, EscrowSenderCodeFailed, client, tries, err, now)
			for _, ev := range events {
				if lerr := e.logAll(tx, m, ev); lerr != nil {
					return lerr
				}
			}
			return err
		}
		return e.logAll(tx, m, EscrowEvent{Time: now, Kind: EscrowSenderVerified, Client: client, Detail: m.EnvelopeFrom})
	})
	return left, err
}

// ErrEscrowNotRecipient: the sender named an access record that is
// not one of this message's.
var ErrEscrowNotRecipient = errors.New("queue: not a recipient of this escrowed message")

// RevokeBySender revokes the message of a sender token: for every
// recipient when rcptID is "" (content and key destroyed, RevokedBy
// "sender"), else that access record's links only. The portal calls it
// only for a sender who proved their address in this session.
func (e *Escrow) RevokeBySender(token, rcptID, client string) error {
	return e.updateBySender(token, func(tx escrowTx, m *EscrowMessage, now time.Time) error {
		if rcptID == "" {
			m.Revoked, m.RevokedBy = now, escrowRevokedBySender
			return e.destroy(tx, m, EscrowEvent{Time: now, Kind: EscrowRevoked, Client: client,
				Detail: "message revoked by sender " + m.EnvelopeFrom})
		}
		if !slices.Contains(m.Recipients, rcptID) {
			return ErrEscrowNotRecipient
		}
		r, err := e.getRecipient(tx, rcptID)
		if err != nil {
			return err
		}
		return e.revokeRecipient(tx, r, EscrowEvent{Time: now, Kind: EscrowRevoked, Client: client,
			Detail: "access revoked by sender " + m.EnvelopeFrom})
	})
}

// Revoked reports whether this recipient's access was revoked on its
// own (a whole message's revocation shows in the message's State).
func (r *EscrowRecipient) Revoked() bool {
	return slices.ContainsFunc(r.Events, func(ev EscrowEvent) bool { return ev.Kind == EscrowRevoked })
}
