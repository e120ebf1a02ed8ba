package queue

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Redecision is the policy's decision about a queued message taken
// again (queue reapply).
type Redecision struct {
	// Decisions are the recipients' chains, parallel to the envelope's
	// recipients.
	Decisions []RcptDecision
	// Hold is the rules that hold the message for review, "" when none.
	Hold string
	// Reject is the text of a rule that would now refuse the message
	// (RejectRule names it): its pending recipients bounce with 5.7.1.
	Reject, RejectRule string
}

// ReportFunc builds a DSN about rcpts of m as DSNFunc does, from the
// message's body (report.DSNBuilder.Build): the admin operations read
// the body themselves.
type ReportFunc func(m *Message, rcpts []Recipient, body []byte) (Envelope, []byte, error)

// onBody is report as a DSNFunc for a message whose body is body.
func onBody(report ReportFunc, body []byte) DSNFunc {
	if report == nil {
		return nil
	}
	return func(m *Message, rcpts []Recipient) (Envelope, []byte, error) { return report(m, rcpts, body) }
}

// DecideFunc decides a queued message again from its record and body.
type DecideFunc func(m *Message, body []byte) (Redecision, error)

// Redecide takes the policy decision about message id again (decide)
// and applies it to the recipients still pending: each starts over at
// the first method of its new chain, due now; a policy hold is set,
// replaced or lifted (an admin's hold stays); a rejecting rule bounces
// them with a DSN. Delivered, bounced and dropped recipients keep their
// outcome, the message its expiry and its content. ErrFinished when
// nothing is pending. The second result is the ID of a DSN spooled with
// the change, "" when none.
func (s *Store) Redecide(id string, decide DecideFunc, report ReportFunc) (*Message, string, error) {
	m, err := s.Get(id)
	if err != nil {
		return nil, "", err
	}
	if finished(m) {
		return nil, "", fmt.Errorf("%s: nothing to decide again: %w", id, ErrFinished)
	}
	body, err := s.Body(id)
	if err != nil {
		return nil, "", err
	}
	d, err := decide(m, body)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", id, err)
	}
	var dsnID string
	out, err := s.update(id, func(tx *bolt.Tx, m *Message) error {
		dsnID = ""
		if finished(m) {
			return fmt.Errorf("%s: nothing to decide again: %w", id, ErrFinished)
		}
		now := s.now()
		if d.Reject != "" {
			bounced := bouncePending(m, "5.7.1", "refused by policy rule "+d.RejectRule+" when the policy was applied again: "+d.Reject, now)
			for _, r := range bounced {
				m.Events = append(m.Events, Event{Time: now, Kind: "bounced", Detail: r.Address + ": " + r.LastError})
			}
			var err error
			if dsnID, err = s.queueReport(tx, m, bounced, onBody(report, body), now); err != nil {
				return err
			}
			return s.finishIfDone(tx, m, now)
		}
		var changes []string
		for i := range m.Recipients {
			r := &m.Recipients[i]
			if r.State.Final() {
				continue
			}
			var nd RcptDecision
			if i < len(d.Decisions) {
				nd = d.Decisions[i]
			}
			if len(nd.Chain) == 0 {
				nd.Chain = []string{"tls"}
			}
			old := r.Chain
			if len(old) == 0 {
				old = []string{"tls"} // a recipient without a chain gets tls
			}
			change := "unchanged"
			if !slices.Equal(old, nd.Chain) || r.Step != 0 {
				change = fmt.Sprintf("was [%s] at %s", strings.Join(old, ", "), r.Method())
			}
			changes = append(changes, fmt.Sprintf("%s: [%s] by %s (%s)", r.Address, strings.Join(nd.Chain, ", "), nd.By, change))
			r.Chain, r.Rules, r.By, r.Step = nd.Chain, nd.Rules, nd.By, 0
			r.State, r.NextAttempt = StateQueued, now
		}
		if len(d.Decisions) == len(m.Envelope.Recipients) {
			m.Envelope.Decisions = d.Decisions
		}
		m.Events = append(m.Events, Event{Time: now, Kind: "reapplied", Detail: "policy applied again: " + strings.Join(changes, "; ")})
		switch {
		case d.Hold != "" && d.Hold == m.ReleasedHold:
			// An admin released it from this very hold: the admin's
			// decision stands until the reason changes.
			m.Envelope.Hold = d.Hold
		case d.Hold != "":
			if !m.Held || m.Envelope.Hold != d.Hold {
				m.Events = append(m.Events, Event{Time: now, Kind: "held", Detail: "held for review by policy: " + d.Hold})
			}
			m.Held, m.Envelope.Hold = true, d.Hold
		case m.Envelope.Hold != "":
			if m.Held && !m.AdminHold {
				m.Events = append(m.Events, Event{Time: now, Kind: "released",
					Detail: "policy hold lifted: the policy no longer holds it (held because: " + m.Envelope.Hold + ")"})
			}
			m.Held, m.Envelope.Hold = m.AdminHold, "" // an admin's hold stays
		}
		return nil
	})
	return out, dsnID, err
}

// Bounce ends every pending recipient of id as bounced (status 5.0.0,
// why as the reason) and sends the sender a DSN about them (queue delete
// --bounce): the body goes at once, the record stays for the retention
// period so the history shows who did it. ErrFinished when nothing is
// pending. It returns the DSN's ID, "" when none was due (null sender).
func (s *Store) Bounce(id, why string, report ReportFunc) (string, error) {
	body, err := s.Body(id)
	switch {
	case errors.Is(err, ErrBodyGone):
		return "", fmt.Errorf("%s: nothing to bounce: %w", id, ErrFinished)
	case err != nil:
		return "", err
	}
	var dsnID string
	_, err = s.update(id, func(tx *bolt.Tx, m *Message) error {
		dsnID = ""
		if finished(m) {
			return fmt.Errorf("%s: nothing to bounce: %w", id, ErrFinished)
		}
		now := s.now()
		bounced := bouncePending(m, "5.0.0", why, now)
		for _, r := range bounced { // per recipient, as any bounce: the audit trail and webhooks see each
			m.Events = append(m.Events, Event{Time: now, Kind: "bounced", Detail: r.Address + ": " + why})
		}
		m.Events = append(m.Events, Event{Time: now, Kind: "deleted", Detail: fmt.Sprintf("%s (%d recipients bounced)", why, len(bounced))})
		var err error
		if dsnID, err = s.queueReport(tx, m, bounced, onBody(report, body), now); err != nil {
			return err
		}
		return s.finishIfDone(tx, m, now)
	})
	return dsnID, err
}

// bouncePending ends every pending recipient of m as bounced with status
// and why, and returns them.
func bouncePending(m *Message, status, why string, now time.Time) []Recipient {
	var bounced []Recipient
	for i := range m.Recipients {
		r := &m.Recipients[i]
		if r.State.Final() {
			continue
		}
		r.State, r.Status, r.LastCode, r.LastError, r.DoneAt, r.NextAttempt = StateBounced, status, 0, why, now, time.Time{}
		bounced = append(bounced, *r)
	}
	return bounced
}

// NotifyHeldDelays sends the delay notices that held messages are due:
// a held message makes no attempts, so RecordAttempt never tells its
// sender. It returns the IDs of the notices spooled.
func (s *Store) NotifyHeldDelays(report ReportFunc) ([]string, error) {
	if s.opts.DelayWarning <= 0 || report == nil {
		return nil, nil
	}
	msgs, err := s.List()
	if err != nil {
		return nil, err
	}
	now := s.now()
	var ids []string
	for _, m := range msgs {
		if !m.Held || finished(&m) || m.Envelope.From == "" || m.Envelope.IsDSN || now.Sub(m.Received) < s.opts.DelayWarning || !delayUnnotified(&m) {
			continue
		}
		body, err := s.Body(m.ID)
		if err != nil {
			continue // finished or gone since the list was read
		}
		var dsnID string
		_, err = s.update(m.ID, func(tx *bolt.Tx, m *Message) error {
			dsnID = ""
			if !m.Held || finished(m) {
				return nil
			}
			var due []Recipient
			for i := range m.Recipients {
				if r := &m.Recipients[i]; !r.State.Final() && r.DelayNotified.IsZero() {
					r.DelayNotified = now
					due = append(due, *r)
				}
			}
			var err error
			dsnID, err = s.queueReport(tx, m, due, onBody(report, body), now)
			return err
		})
		if err != nil && !errors.Is(err, ErrNotFound) {
			return ids, err
		}
		if dsnID != "" {
			ids = append(ids, dsnID)
		}
	}
	return ids, nil
}

func delayUnnotified(m *Message) bool {
	for _, r := range m.Recipients {
		if !r.State.Final() && r.DelayNotified.IsZero() {
			return true
		}
	}
	return false
}
