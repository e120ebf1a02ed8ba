package queue

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// DSNFunc builds a delivery status notification about the recipients of
// m that just bounced. RecordAttempt calls it inside its transaction, so
// the DSN is spooled atomically with the bounce: a crash can neither lose
// it nor send it twice. It must be a pure function of its arguments.
type DSNFunc func(m *Message, bounced []Recipient) (Envelope, []byte, error)

// update runs fn on one message inside a write transaction and stores
// the result.
func (s *Store) update(id string, fn func(tx *bolt.Tx, m *Message) error) (*Message, error) {
	return s.updateWith(s.commitNow, id, fn)
}

func (s *Store) commitNow(fn func(tx *bolt.Tx) error) error {
	return s.commit(context.Background(), 0, fn)
}

// updateWith is update through the given commit (commitNow or commitLazy).
func (s *Store) updateWith(commit func(func(tx *bolt.Tx) error) error, id string, fn func(tx *bolt.Tx, m *Message) error) (*Message, error) {
	var out *Message
	err := commit(func(tx *bolt.Tx) error {
		m, err := s.getMessage(tx, id)
		if err != nil {
			return err
		}
		if err := fn(tx, m); err != nil {
			return err
		}
		out = m
		return s.putMessage(tx, m)
	})
	if errors.Is(err, errCorrupt) {
		s.quarantine(id, err)
		return nil, ErrNotFound
	}
	return out, err
}

// RecordAttempt applies the outcome of one delivery attempt: delivered
// recipients are done, permanent failures bounce, the rest are deferred
// with exponential backoff, and deferred recipients past the message's
// expiry bounce with 4.4.7. Bounces, and deferred recipients whose
// sender has waited DelayWarning, produce one DSN (failed and delayed
// recipients together; none to the null sender or about a DSN), spooled
// in the same transaction; its ID is the second result. When every recipient is final the body is
// removed at once. The record is a lazy commit (see lazyCommitWait).
func (s *Store) RecordAttempt(id string, att Attempt, outcomes []RcptOutcome, dsn DSNFunc) (*Message, string, error) {
	var dsnID string
	m, err := s.updateWith(s.commitLazy, id, func(tx *bolt.Tx, m *Message) error {
		dsnID = ""
		now := s.now()
		m.Events = append(m.Events, Event{Time: now, Kind: "attempt", Detail: attemptSummary(outcomes), Attempt: &att})
		var bounced []Recipient
		for _, o := range outcomes {
			r := findPending(m, o.Address)
			if r == nil {
				continue
			}
			if o.Method != "" && o.Method != r.Method() && !o.Delivered && !o.Permanent && !o.Dropped {
				// The recipient was decided again (queue reapply) while
				// this attempt ran: a skip or a deferral of the old
				// method says nothing about the new one.
				continue
			}
			r.Attempts++
			r.LastCode, r.Status, r.LastError = o.Code, o.Status, o.Message
			if o.RemoteMTA != "" {
				r.RemoteMTA = o.RemoteMTA
			}
			switch {
			case o.Skip:
				// The method cannot apply: the next one is tried now,
				// and no attempt is counted against the recipient.
				r.Attempts--
				m.Events = append(m.Events, Event{Time: now, Kind: "skipped",
					Detail: fmt.Sprintf("%s: method %s skipped: %s", r.Address, r.Method(), o.Message)})
				r.Step++
				r.State, r.NextAttempt = StateQueued, now
			case o.Dropped:
				r.State, r.DoneAt, r.NextAttempt = StateDropped, now, time.Time{}
				m.Events = append(m.Events, Event{Time: now, Kind: "dropped", Detail: r.Address + ": " + o.Message})
			case o.Delivered:
				r.State, r.DoneAt, r.NextAttempt = StateDelivered, now, time.Time{}
			case o.Permanent:
				r.State, r.DoneAt, r.NextAttempt = StateBounced, now, time.Time{}
				bounced = append(bounced, *r)
				m.Events = append(m.Events, Event{Time: now, Kind: "bounced", Detail: r.Address + ": " + o.Message})
			default:
				r.State = StateDeferred
				r.NextAttempt = now.Add(s.backoff(r.Attempts))
			}
		}
		for i := range m.Recipients {
			r := &m.Recipients[i]
			if r.State == StateDeferred && !now.Before(m.Expires) {
				r.LastError = fmt.Sprintf("message expired after %d attempts: %s", r.Attempts, r.LastError)
				r.State, r.Status, r.DoneAt, r.NextAttempt = StateBounced, "4.4.7", now, time.Time{}
				bounced = append(bounced, *r)
				m.Events = append(m.Events, Event{Time: now, Kind: "expired", Detail: r.Address + ": " + r.LastError})
			}
		}
		reported := append(bounced, s.dueDelayNotices(m, now)...)
		var err error
		if dsnID, err = s.queueReport(tx, m, reported, dsn, now); err != nil {
			return err
		}
		return s.finishIfDone(tx, m, now)
	})
	return m, dsnID, err
}

// dueDelayNotices marks the deferred recipients of m whose sender must
// now hear that they are delayed (DelayWarning has passed since arrival
// and nobody was told yet) and returns them.
func (s *Store) dueDelayNotices(m *Message, now time.Time) []Recipient {
	if s.opts.DelayWarning <= 0 || now.Sub(m.Received) < s.opts.DelayWarning {
		return nil
	}
	var due []Recipient
	for i := range m.Recipients {
		r := &m.Recipients[i]
		if r.State == StateDeferred && r.DelayNotified.IsZero() {
			r.DelayNotified = now
			due = append(due, *r)
		}
	}
	return due
}

// queueReport spools, inside tx, one delivery status notification to
// m's sender about rcpts: the bounced ones failed, the others are
// delayed (the builder tells them apart by state). Nothing goes to the
// null sender or about a DSN. A DSN that cannot be built is on record
// and the rest stands. It returns the DSN's ID ("" when none).
func (s *Store) queueReport(tx *bolt.Tx, m *Message, rcpts []Recipient, dsn DSNFunc, now time.Time) (string, error) {
	if len(rcpts) == 0 || dsn == nil || m.Envelope.From == "" || m.Envelope.IsDSN {
		return "", nil
	}
	what := "delay notice"
	for _, r := range rcpts {
		if r.State.Final() {
			what = "DSN"
		}
	}
	env, body, err := dsn(m, rcpts)
	if err != nil {
		m.Events = append(m.Events, Event{Time: now, Kind: "dsn", Detail: "could not build " + what + ": " + err.Error()})
		return "", nil
	}
	env.IsDSN = true
	id, err := s.putNew(tx, env, body, "delivery status notification for "+m.ID)
	if err != nil {
		return "", err
	}
	m.Events = append(m.Events, Event{Time: now, Kind: "dsn", Detail: what + " " + id + " queued to " + m.Envelope.From})
	return id, nil
}

// finishIfDone marks a message whose recipients are all final and drops
// its body: nothing will be sent again, and the body is the part worth
// protecting.
func (s *Store) finishIfDone(tx *bolt.Tx, m *Message, now time.Time) error {
	for _, r := range m.Recipients {
		if !r.State.Final() {
			return nil
		}
	}
	if m.DoneAt.IsZero() {
		m.DoneAt = now
	}
	return tx.Bucket(bucketBodies).Delete([]byte(m.ID))
}

func findPending(m *Message, addr string) *Recipient {
	for i := range m.Recipients {
		if r := &m.Recipients[i]; r.Address == addr && !r.State.Final() {
			return r
		}
	}
	return nil
}

// attemptSummary counts an attempt's outcomes for its history entry: a
// recipient whose method was skipped (it moves on to the next) or that
// was dropped is neither deferred nor bounced.
func attemptSummary(outcomes []RcptOutcome) string {
	var d, t, p, skipped, dropped int
	for _, o := range outcomes {
		switch {
		case o.Delivered:
			d++
		case o.Dropped:
			dropped++
		case o.Permanent:
			p++
		case o.Skip:
			skipped++
		default:
			t++
		}
	}
	s := fmt.Sprintf("delivered %d, deferred %d, bounced %d", d, t, p)
	if skipped > 0 {
		s += fmt.Sprintf(", skipped %d", skipped)
	}
	if dropped > 0 {
		s += fmt.Sprintf(", dropped %d", dropped)
	}
	return s
}

// backoff is RetryInitial doubled per earlier attempt, capped at
// RetryMax, with ±10% jitter so that a destination's backlog does not
// return all at once.
func (s *Store) backoff(attempts int) time.Duration {
	d := s.opts.RetryInitial
	for i := 1; i < attempts && d < s.opts.RetryMax; i++ {
		d *= 2
	}
	d = min(d, s.opts.RetryMax)
	jitter := time.Duration(rand.Int64N(int64(d)/5+1)) - d/10
	return d + jitter
}

// Hold stops delivery attempts for id until Release. A finished message
// has nothing left to hold: ErrFinished.
func (s *Store) Hold(id string) error {
	_, err := s.update(id, func(_ *bolt.Tx, m *Message) error {
		if finished(m) {
			return fmt.Errorf("%s: nothing to hold: %w", id, ErrFinished)
		}
		m.Held, m.AdminHold = true, true
		m.Events = append(m.Events, Event{Time: s.now(), Kind: "held", Detail: "held by admin"})
		return nil
	})
	return err
}

// Release lets a held message be attempted again, at once.
func (s *Store) Release(id string) error {
	_, err := s.update(id, func(_ *bolt.Tx, m *Message) error {
		now := s.now()
		detail := "released by admin"
		if m.Held && m.Envelope.Hold != "" {
			// The policy held it for review: lifting that is an admin's
			// decision, and the history says whose rule it overrode.
			detail = "policy hold lifted by admin (held because: " + m.Envelope.Hold + ")"
		}
		if m.Held && m.Envelope.Hold != "" {
			m.ReleasedHold = m.Envelope.Hold
		}
		m.Held, m.AdminHold = false, false
		makeDue(m, now)
		m.Events = append(m.Events, Event{Time: now, Kind: "released", Detail: detail})
		return nil
	})
	return err
}

// Retry makes every pending recipient of id due now. A held message is
// not retried (ErrHeld, with the reason it is held: releasing it is the
// admin's explicit decision), nor a finished one (ErrFinished).
func (s *Store) Retry(id string) error {
	_, err := s.update(id, func(_ *bolt.Tx, m *Message) error {
		switch {
		case finished(m):
			return fmt.Errorf("%s: nothing to retry: %w", id, ErrFinished)
		case m.Held:
			why := "by admin"
			if m.Envelope.Hold != "" {
				why = "by policy: " + m.Envelope.Hold
			}
			return fmt.Errorf("%s is held (%s); release it to deliver it: %w", id, why, ErrHeld)
		}
		now := s.now()
		makeDue(m, now)
		m.Events = append(m.Events, Event{Time: now, Kind: "retry", Detail: "retry requested by admin"})
		return nil
	})
	return err
}

// retryBatch is how many messages one RetryAll commit changes: one
// fsync for many, and short write transactions.
const retryBatch = 500

// RetryAll makes every pending recipient of every unfinished message that
// is not held due now and returns how many messages that touched.
func (s *Store) RetryAll() (int, error) {
	ids, err := s.RetryAllIDs()
	return len(ids), err
}

// RetryAllIDs is RetryAll, returning the IDs of the messages it touched.
func (s *Store) RetryAllIDs() ([]string, error) {
	msgs, err := s.List()
	if err != nil {
		return nil, err
	}
	var ids []string
	for i := range msgs {
		if !finished(&msgs[i]) && !msgs[i].Held {
			ids = append(ids, msgs[i].ID)
		}
	}
	var done []string
	for len(ids) > 0 {
		batch := ids[:min(len(ids), retryBatch)]
		ids = ids[len(batch):]
		var touched []string
		err := s.commit(context.Background(), 0, func(tx *bolt.Tx) error {
			touched = touched[:0] // the commit may run this more than once
			now := s.now()
			for _, id := range batch {
				m, err := s.getMessage(tx, id)
				if errors.Is(err, ErrNotFound) || errors.Is(err, errCorrupt) {
					continue // gone, or left for the quarantine, since the list was read
				}
				if err != nil {
					return err
				}
				if finished(m) || m.Held {
					continue // changed since the list was read
				}
				makeDue(m, now)
				m.Events = append(m.Events, Event{Time: now, Kind: "retry", Detail: "retry of all messages requested by admin"})
				if err := s.putMessage(tx, m); err != nil {
					return err
				}
				touched = append(touched, id)
			}
			return nil
		})
		if err != nil {
			return done, err
		}
		done = append(done, touched...)
	}
	return done, nil
}

// finished reports whether every recipient of m is final.
func finished(m *Message) bool {
	if !m.DoneAt.IsZero() {
		return true
	}
	for _, r := range m.Recipients {
		if !r.State.Final() {
			return false
		}
	}
	return true
}

func makeDue(m *Message, now time.Time) {
	for i := range m.Recipients {
		if !m.Recipients[i].State.Final() {
			m.Recipients[i].NextAttempt = now
		}
	}
}

// Delete removes a message and its body without delivering it.
func (s *Store) Delete(id string) error {
	return s.commit(context.Background(), 0, func(tx *bolt.Tx) error {
		msgs := tx.Bucket(bucketMessages)
		if msgs.Get([]byte(id)) == nil {
			return ErrNotFound
		}
		if err := msgs.Delete([]byte(id)); err != nil {
			return err
		}
		return tx.Bucket(bucketBodies).Delete([]byte(id))
	})
}

// GC removes finished messages whose retention period has passed and
// returns how many it removed.
func (s *Store) GC() (int, error) {
	cutoff := s.now().Add(-s.opts.Retention)
	msgs, err := s.List()
	if err != nil {
		return 0, err
	}
	var old []string
	for _, m := range msgs {
		if !m.DoneAt.IsZero() && m.DoneAt.Before(cutoff) {
			old = append(old, m.ID)
		}
	}
	if err := s.sweepIdempotency(); err != nil {
		s.logger.Error("cannot sweep idempotency keys", "err", err)
	}
	if n, err := s.sweepBodyFiles(); err != nil {
		s.logger.Error("cannot sweep body files", "err", err)
	} else if n > 0 {
		s.logger.Debug("body files of finished messages removed", "files", n)
	}
	if len(old) == 0 {
		return 0, nil
	}
	err = s.commit(context.Background(), 0, func(tx *bolt.Tx) error {
		for _, id := range old {
			if err := tx.Bucket(bucketMessages).Delete([]byte(id)); err != nil {
				return err
			}
			if err := tx.Bucket(bucketBodies).Delete([]byte(id)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return len(old), nil
}

// Stats counts what the spool holds.
type Stats struct {
	Messages    int           `json:"messages"`
	Held        int           `json:"held"`
	Recipients  map[State]int `json:"recipients"`
	Quarantined int           `json:"quarantined"`
	Commits     int64         `json:"commits"` // group-commit transactions since open
}

// Stats reports counts of messages, recipients per state, held messages
// and quarantined records.
func (s *Store) Stats() (Stats, error) {
	msgs, err := s.List()
	if err != nil {
		return Stats{}, err
	}
	st := Stats{Messages: len(msgs), Recipients: map[State]int{}, Commits: s.batches.Load()}
	for _, m := range msgs {
		if m.Held {
			st.Held++
		}
		for _, r := range m.Recipients {
			st.Recipients[r.State]++
		}
	}
	err = s.view(func(tx *bolt.Tx) error {
		st.Quarantined = quarantinedRecords(tx)
		return nil
	})
	return st, err
}

// Counts are what a readiness probe shows. They come from the
// database's own page statistics, never from opening a record, so they
// cost about the same with a hundred messages or a hundred thousand.
type Counts struct {
	Messages    int `json:"messages"`    // records, finished ones included
	Unfinished  int `json:"unfinished"`  // messages with a body still to deliver
	Quarantined int `json:"quarantined"` // quarantined records
}

// Counts counts the spool's records without opening them.
func (s *Store) Counts() (Counts, error) {
	var c Counts
	err := s.view(func(tx *bolt.Tx) error {
		c.Messages = tx.Bucket(bucketMessages).Stats().KeyN
		c.Unfinished = tx.Bucket(bucketBodies).Stats().KeyN
		c.Quarantined = quarantinedRecords(tx)
		return nil
	})
	return c, err
}

// Check verifies the spool's consistency: every record decrypts and
// decodes, every unfinished message has a body, every body belongs to a
// message. It changes nothing and returns every problem found.
func (s *Store) Check() error {
	var problems []string
	err := s.view(func(tx *bolt.Tx) error {
		msgs, bodies := tx.Bucket(bucketMessages), tx.Bucket(bucketBodies)
		err := msgs.ForEach(func(k, v []byte) error {
			id := string(k)
			m, err := s.decodeMessage(id, v)
			if err != nil {
				problems = append(problems, err.Error())
				return nil
			}
			if m.ID != id {
				problems = append(problems, fmt.Sprintf("%s: record says it is %s", id, m.ID))
			}
			body := bodies.Get(k)
			switch {
			case m.DoneAt.IsZero() && body == nil:
				problems = append(problems, id+": unfinished message without body")
			case !m.DoneAt.IsZero() && body != nil:
				problems = append(problems, id+": finished message still has its body")
			case body != nil:
				if _, err := s.seal.open(kindBody, id, body); err != nil {
					problems = append(problems, id+": body does not decrypt")
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		return bodies.ForEach(func(k, _ []byte) error {
			if msgs.Get(k) == nil {
				problems = append(problems, string(k)+": body without message")
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	if len(problems) > 0 {
		return fmt.Errorf("spool inconsistent:\n%s", strings.Join(problems, "\n"))
	}
	return nil
}

// OldestUnfinished is when the oldest message still to be delivered
// arrived (ok false when there is none). It reads one key — a queue ID
// begins with its arrival time — never a record, so a metrics scrape
// costs the same with a hundred messages or a hundred thousand.
func (s *Store) OldestUnfinished() (t time.Time, ok bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		k, _ := tx.Bucket(bucketBodies).Cursor().First()
		if k == nil || len(k) < 13 {
			return nil
		}
		us, perr := strconv.ParseInt(string(k[:13]), 16, 64)
		if perr != nil {
			return nil
		}
		t, ok = time.UnixMicro(us), true
		return nil
	})
	return t, ok, err
}
