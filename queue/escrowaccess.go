package queue

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// One-time codes, revocation, expiry and listing of the escrow store.

// Errors of the code exchange.
var (
	// ErrEscrowCodeWrong: the code does not match; the recipient may
	// try again (until the code's tries are used up).
	ErrEscrowCodeWrong = errors.New("queue: wrong code")
	// ErrEscrowCodeVoid: there is no code to check against — none was
	// sent, it expired, it was used, or too many wrong tries voided it.
	// A new one must be requested.
	ErrEscrowCodeVoid = errors.New("queue: no valid code")
	// ErrEscrowRateLimited: too many codes were requested for this
	// recipient in the last hour.
	ErrEscrowRateLimited = errors.New("queue: too many codes requested")
)

// CodeDigits is the length of a one-time code: 8 digits, so that the
// tries an attacker holding a forwarded link gets over a message's
// life (5 per code, 5 codes an hour, 30 days) stay below one in 5,000.
const CodeDigits = 8

// IssueCode makes a new one-time code for a token's recipient,
// replacing any earlier code, and returns it with the address to mail
// it to. It refuses (ErrEscrowRateLimited) past CodesPerHour.
func (e *Escrow) IssueCode(token, client string) (code, address string, err error) {
	n, _ := rand.Int(rand.Reader, big.NewInt(100_000_000))
	code = fmt.Sprintf("%0*d", CodeDigits, n)
	var salt [16]byte
	rand.Read(salt[:])
	err = e.updateByToken(token, func(r *EscrowRecipient, _ *EscrowMessage, now time.Time) error {
		if err := e.newCode(&r.CodesSent, &r.Code, salt[:], code, now); err != nil {
			r.Events = append(r.Events, EscrowEvent{Time: now, Kind: EscrowCodeFailed, Client: client, Detail: "code request refused: too many in the last hour"})
			return err
		}
		r.Events = append(r.Events, EscrowEvent{Time: now, Kind: EscrowCodeSent, Client: client})
		address = r.Address
		return nil
	})
	if err != nil {
		return "", "", err
	}
	return code, address, nil
}

// newCode puts a new code in *slot unless CodesPerHour codes were sent
// in the last hour (ErrEscrowRateLimited); sent keeps that hour's.
func (e *Escrow) newCode(sent *[]time.Time, slot **EscrowCode, salt []byte, code string, now time.Time) error {
	recent := (*sent)[:0:0]
	for _, t := range *sent {
		if now.Sub(t) < time.Hour {
			recent = append(recent, t)
		}
	}
	*sent = recent
	if len(recent) >= e.opts.CodesPerHour {
		return ErrEscrowRateLimited
	}
	*sent = append(*sent, now)
	*slot = &EscrowCode{Salt: salt, Hash: codeHash(salt, code), Expires: now.Add(e.opts.CodeTTL)}
	return nil
}

// checkCode checks code against *slot: nil when right (the code is
// spent); ErrEscrowCodeWrong with the wrong tries so far; or
// ErrEscrowCodeVoid — with tries 0 when there was no valid code, with
// tries > 0 when this wrong try used up the last (the code is voided).
func (e *Escrow) checkCode(slot **EscrowCode, code string, now time.Time) (tries int, err error) {
	c := *slot
	if c == nil || !now.Before(c.Expires) {
		*slot = nil
		return 0, ErrEscrowCodeVoid
	}
	if subtle.ConstantTimeCompare(codeHash(c.Salt, code), c.Hash) == 1 {
		*slot = nil
		return 0, nil
	}
	c.Tries++
	if c.Tries >= e.opts.CodeTries {
		*slot = nil
		return c.Tries, ErrEscrowCodeVoid
	}
	return c.Tries, ErrEscrowCodeWrong
}

// codeEvents logs a failed check of checkCode as kind (and "locked"
// when it voided the code) and returns the tries left.
func (e *Escrow) codeEvents(events *[]EscrowEvent, kind, client string, tries int, err error, now time.Time) (left int) {
	if tries == 0 {
		*events = append(*events, EscrowEvent{Time: now, Kind: kind, Client: client, Detail: "no valid code"})
		return 0
	}
	*events = append(*events, EscrowEvent{Time: now, Kind: kind, Client: client, Detail: fmt.Sprintf("wrong code (%d of %d)", tries, e.opts.CodeTries)})
	if errors.Is(err, ErrEscrowCodeVoid) {
		*events = append(*events, EscrowEvent{Time: now, Kind: EscrowLocked, Client: client, Detail: "code voided after too many wrong tries"})
		return 0
	}
	return e.opts.CodeTries - tries
}

func codeHash(salt []byte, code string) []byte {
	h := sha256.Sum256(append(append([]byte(nil), salt...), code...))
	return h[:]
}

// CheckCode checks a code for a token's recipient. The right code is
// spent (single use) and the recipient's "opened" event recorded; a
// wrong one counts, and the last allowed wrong try voids the code
// ("locked"). It returns the tries left with ErrEscrowCodeWrong.
func (e *Escrow) CheckCode(token, code, client string) (left int, err error) {
	code = strings.TrimSpace(code)
	err = e.updateByToken(token, func(r *EscrowRecipient, _ *EscrowMessage, now time.Time) error {
		tries, err := e.checkCode(&r.Code, code, now)
		if err != nil {
			left = e.codeEvents(&r.Events, EscrowCodeFailed, client, tries, err, now)
			return err
		}
		if r.Opened.IsZero() {
			r.Opened = now
		}
		r.Events = append(r.Events, EscrowEvent{Time: now, Kind: EscrowOpened, Client: client})
		return nil
	})
	return left, err
}

// Revoke ends access to an escrowed message (ID of the message: every
// recipient; ID of an access record, "<message>.<n>": that recipient)
// and, for a whole message, destroys its content. by says who, for the
// log.
func (e *Escrow) Revoke(id, by string) error {
	return e.update(0, func(tx escrowTx) error {
		now := e.now()
		msgID, one, _ := strings.Cut(id, ".")
		m, err := e.getMessage(tx, msgID)
		if err != nil {
			return err
		}
		if one != "" {
			r, err := e.getRecipient(tx, id)
			if err != nil {
				return err
			}
			return e.revokeRecipient(tx, r, EscrowEvent{Time: now, Kind: EscrowRevoked, Detail: "access revoked by " + by})
		}
		if !m.Revoked.IsZero() {
			return nil
		}
		m.Revoked, m.RevokedBy = now, by
		return e.destroy(tx, m, EscrowEvent{Time: now, Kind: EscrowRevoked, Detail: "message revoked by " + by})
	})
}

// revokeRecipient ends one recipient's links and logs ev.
func (e *Escrow) revokeRecipient(tx escrowTx, r *EscrowRecipient, ev EscrowEvent) error {
	for _, h := range r.TokenHashes {
		if err := tx.Bucket(bucketEscrowTokens).Delete([]byte(h)); err != nil {
			return err
		}
	}
	r.Code = nil
	r.Events = append(r.Events, ev)
	return e.putRecipient(tx, r)
}

// destroy removes a message's content and key and logs ev for each
// recipient.
func (e *Escrow) destroy(tx escrowTx, m *EscrowMessage, ev EscrowEvent) error {
	now := ev.Time
	m.Destroyed, m.WrappedKey = now, nil
	content := tx.Bucket(bucketEscrowContent)
	if bytes.Equal(content.Get([]byte(m.ID)), objectRef) && e.opts.Objects != nil {
		// Its key is forgotten below, which is what destroys it; the
		// object goes once that is committed (a failed deletion leaves
		// ciphertext nothing opens, and is logged).
		id := m.ID
		tx.after(func() {
			ctx, cancel := context.WithTimeout(context.Background(), objectTimeout)
			defer cancel()
			if err := e.opts.Objects.DeleteObject(ctx, id); err != nil {
				e.s.logger.Error("escrow object store: cannot delete a destroyed message's content", "escrow_id", id, "err", err)
			}
		})
	}
	if err := content.Delete([]byte(m.ID)); err != nil {
		return err
	}
	for _, id := range m.Recipients {
		r, err := e.getRecipient(tx, id)
		if err != nil {
			return err
		}
		r.Code = nil
		r.Events = append(r.Events, ev)
		if err := e.putRecipient(tx, r); err != nil {
			return err
		}
	}
	return e.putMessage(tx, tx.Bucket(bucketEscrowMsgs), m)
}

// Sweep destroys the content of every message past its expiry and
// returns how many it destroyed. The records stay, for the audit. It
// also audits the access events a fleet's node left unaudited when it
// stopped between the shared commit and its spool's (auditAccess).
func (e *Escrow) Sweep() (int, error) {
	if err := e.auditLeftovers(); err != nil {
		return 0, err
	}
	now := e.now()
	var due []string
	err := e.view(func(tx escrowTx) error {
		return tx.Bucket(bucketEscrowMsgs).ForEach(func(k, _ []byte) error {
			m, err := e.getMessage(tx, string(k))
			if err != nil {
				return err
			}
			if m.Destroyed.IsZero() && !now.Before(m.Expires) {
				due = append(due, m.ID)
			}
			return nil
		})
	})
	if err != nil || len(due) == 0 {
		return 0, err
	}
	err = e.update(0, func(tx escrowTx) error {
		for _, id := range due {
			m, err := e.getMessage(tx, id)
			if err != nil {
				return err
			}
			if m.Destroyed.IsZero() {
				if err := e.destroy(tx, m, EscrowEvent{Time: now, Kind: EscrowExpired, Detail: "content destroyed at expiry"}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return len(due), err
}

// List returns every recipient's access record with its message,
// oldest first.
func (e *Escrow) List() ([]EscrowEntry, error) {
	var out []EscrowEntry
	err := e.view(func(tx escrowTx) error {
		return tx.Bucket(bucketEscrowMsgs).ForEach(func(k, _ []byte) error {
			m, err := e.getMessage(tx, string(k))
			if err != nil {
				return err
			}
			for _, id := range m.Recipients {
				r, err := e.getRecipient(tx, id)
				if err != nil {
					return err
				}
				out = append(out, EscrowEntry{Message: *m, Recipient: *r})
			}
			return nil
		})
	})
	return out, err
}

// Show returns the records of a message ID (every recipient) or of an
// access record ID (that recipient).
func (e *Escrow) Show(id string) ([]EscrowEntry, error) {
	all, err := e.List()
	if err != nil {
		return nil, err
	}
	var out []EscrowEntry
	for _, en := range all {
		if en.Message.ID == id || en.Recipient.ID == id {
			out = append(out, en)
		}
	}
	if len(out) == 0 {
		return nil, ErrEscrowGone
	}
	return out, nil
}

// ForQueueID returns the access records of the message escrowed from
// a spool message, for queue show.
func (e *Escrow) ForQueueID(queueID string) ([]EscrowEntry, error) {
	var id string
	e.view(func(tx escrowTx) error {
		id = string(tx.Bucket(bucketEscrowQueue).Get([]byte(queueID)))
		return nil
	})
	if id == "" {
		return nil, nil
	}
	return e.Show(id)
}

// EscrowInUse reports whether the spool holds an escrow store (its key
// check or a message), which only its own key opens. The CLI asks
// before OpenEscrow so that looking at a data dir never creates a key.
func (s *Store) EscrowInUse() (bool, error) {
	inUse := false
	if sh, ok := s.shared.(SharedKV); ok {
		err := sh.KVView(func(tx KVTx) error {
			k, _ := tx.Bucket(bucketEscrowMeta).Cursor().First()
			inUse = k != nil
			return nil
		})
		return inUse, err
	}
	err := s.view(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketEscrowMeta); b != nil && b.Get(keyCheckName) != nil {
			inUse = true
		}
		if b := tx.Bucket(bucketEscrowMsgs); b != nil {
			if k, _ := b.Cursor().First(); k != nil {
				inUse = true
			}
		}
		return nil
	})
	return inUse, err
}

// unauditedGrace is how old a recipient's newest event must be before
// the sweep audits what it lacks: a younger one may belong to a node
// that is about to mark it.
const unauditedGrace = time.Minute

// auditLeftovers audits the events of the recipients whose records say
// they were not all audited (only a fleet's node can leave them so).
func (e *Escrow) auditLeftovers() error {
	if e.shared == nil {
		return nil // one transaction holds the events and their audit
	}
	now := e.now()
	var pending []string
	err := e.view(func(tx escrowTx) error {
		return tx.Bucket(bucketEscrowRcpts).ForEach(func(k, _ []byte) error {
			r, err := e.getRecipient(tx, string(k))
			if err != nil {
				return nil // a damaged record is another matter; keep sweeping
			}
			if r.AuditedEvents < len(r.Events) && now.Sub(r.Events[len(r.Events)-1].Time) >= unauditedGrace {
				pending = append(pending, r.ID)
			}
			return nil
		})
	})
	if err != nil || len(pending) == 0 {
		return err
	}
	return e.update(0, func(tx escrowTx) error {
		for _, id := range pending {
			r, err := e.getRecipient(tx, id)
			if errors.Is(err, ErrEscrowGone) {
				continue
			}
			if err != nil {
				return err
			}
			if r.AuditedEvents < len(r.Events) {
				if err := e.putRecipient(tx, r); err != nil {
					return err
				}
			}
		}
		return nil
	})
}
