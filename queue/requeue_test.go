package queue

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// reports records the DSNs the store asked for: which recipients, in
// which states, and whether the builder saw the body.
type reports struct{ calls [][]string }

func (r *reports) build(m *Message, rcpts []Recipient, body []byte) (Envelope, []byte, error) {
	var got []string
	for _, rc := range rcpts {
		got = append(got, rc.Address+"="+string(rc.State))
	}
	r.calls = append(r.calls, got)
	return Envelope{From: "", Recipients: []string{m.Envelope.From}}, append([]byte("Subject: report\r\n\r\n"), body...), nil
}

func (r *reports) dsn(m *Message, rcpts []Recipient) (Envelope, []byte, error) {
	return r.build(m, rcpts, nil)
}

func TestRedecideMovesPendingRecipientsOntoTheNewChain(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC)}
	s := openTest(t, Options{Now: clock.Now})
	id, err := s.Enqueue(context.Background(), Envelope{From: "alice@org.test", Recipients: []string{"bob@dest.test", "carol@dest.test"},
		Decisions: []RcptDecision{{Chain: []string{"pgp", "escrow"}, By: "tag [secure]"}, {Chain: []string{"pgp", "escrow"}, By: "tag [secure]"}},
		Hold:      "review"}, []byte("Subject: x\r\n\r\nbody\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	// carol is delivered already; bob is at the chain's second step.
	if _, _, err := s.RecordAttempt(id, Attempt{}, []RcptOutcome{
		{Address: "carol@dest.test", Delivered: true},
		{Address: "bob@dest.test", Skip: true, Message: "no key"},
	}, nil); err != nil {
		t.Fatal(err)
	}
	clock.Add(time.Hour)
	var seen []byte
	decide := func(m *Message, body []byte) (Redecision, error) {
		seen = body
		return Redecision{Decisions: []RcptDecision{{Chain: []string{"tls-verified", "bounce"}, By: "tag [secure]"}, {Chain: []string{"tls"}}}}, nil
	}
	m, dsnID, err := s.Redecide(id, decide, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(seen) != "Subject: x\r\n\r\nbody\r\n" || dsnID != "" {
		t.Errorf("decided on %q; DSN %q", seen, dsnID)
	}
	bob, carol := m.Recipients[0], m.Recipients[1]
	if !slices.Equal(bob.Chain, []string{"tls-verified", "bounce"}) || bob.Step != 0 || bob.State != StateQueued || !bob.NextAttempt.Equal(clock.Now()) {
		t.Errorf("bob after reapply: %+v", bob)
	}
	if carol.State != StateDelivered || !slices.Equal(carol.Chain, []string{"pgp", "escrow"}) {
		t.Errorf("a delivered recipient was decided again: %+v", carol)
	}
	if m.Held || m.Envelope.Hold != "" || !hasKind(m, "released", "policy no longer holds it") {
		t.Errorf("the policy hold was not lifted: held %v %q %+v", m.Held, m.Envelope.Hold, m.Events)
	}
	if !hasKind(m, "reapplied", "bob@dest.test: [tls-verified, bounce] by tag [secure] (was [pgp, escrow] at escrow)") {
		t.Errorf("history: %+v", m.Events)
	}

	// Finished messages are not decided again.
	if _, _, err := s.RecordAttempt(id, Attempt{}, []RcptOutcome{{Address: "bob@dest.test", Delivered: true}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Redecide(id, decide, nil); !errors.Is(err, ErrFinished) {
		t.Errorf("Redecide of a finished message: %v", err)
	}
}

func TestRedecideKeepsAnAdminHoldAndSetsAPolicyHold(t *testing.T) {
	s := openTest(t, Options{})
	admin := enqueue(t, s, "alice@org.test", "Subject: x\r\n\r\nx\r\n", "bob@dest.test")
	if err := s.Hold(admin); err != nil {
		t.Fatal(err)
	}
	free := enqueue(t, s, "alice@org.test", "Subject: x\r\n\r\nx\r\n", "bob@dest.test")
	tls := func(*Message, []byte) (Redecision, error) {
		return Redecision{Decisions: []RcptDecision{{Chain: []string{"tls"}}}}, nil
	}
	if m, _, err := s.Redecide(admin, tls, nil); err != nil || !m.Held {
		t.Errorf("an admin's hold was lifted by reapply: %+v, %v", m, err)
	}
	held := func(*Message, []byte) (Redecision, error) {
		return Redecision{Decisions: []RcptDecision{{Chain: []string{"tls"}}}, Hold: "dlp-review"}, nil
	}
	if m, _, err := s.Redecide(free, held, nil); err != nil || !m.Held || m.Envelope.Hold != "dlp-review" || !hasKind(m, "held", "dlp-review") {
		t.Errorf("a new policy hold was not set: %+v, %v", m, err)
	}
}

func TestRedecideRejectBouncesWithADSN(t *testing.T) {
	s := openTest(t, Options{})
	id := enqueue(t, s, "alice@org.test", "Subject: x\r\n\r\nthe body\r\n", "bob@dest.test")
	var r reports
	m, dsnID, err := s.Redecide(id, func(*Message, []byte) (Redecision, error) {
		return Redecision{Reject: "no SSNs", RejectRule: "no-ssn"}, nil
	}, r.build)
	if err != nil {
		t.Fatal(err)
	}
	if bob := m.Recipients[0]; bob.State != StateBounced || bob.Status != "5.7.1" || !strings.Contains(bob.LastError, "no-ssn") {
		t.Errorf("bob: %+v", bob)
	}
	if dsnID == "" || len(r.calls) != 1 || !slices.Equal(r.calls[0], []string{"bob@dest.test=bounced"}) {
		t.Fatalf("DSN %q, reports %v", dsnID, r.calls)
	}
	if body, err := s.Body(dsnID); err != nil || !strings.Contains(string(body), "the body") {
		t.Errorf("the DSN builder did not get the message: %q, %v", body, err)
	}
	if _, err := s.Body(id); !errors.Is(err, ErrBodyGone) {
		t.Errorf("the bounced message keeps its body: %v", err)
	}
}

func TestBounceEndsPendingRecipientsAndKeepsTheRecord(t *testing.T) {
	s := openTest(t, Options{})
	id := enqueue(t, s, "alice@org.test", "Subject: x\r\n\r\nx\r\n", "bob@dest.test", "carol@dest.test")
	if _, _, err := s.RecordAttempt(id, Attempt{}, []RcptOutcome{{Address: "carol@dest.test", Delivered: true}}, nil); err != nil {
		t.Fatal(err)
	}
	var r reports
	dsnID, err := s.Bounce(id, "message deleted by the mail administrator", r.build)
	if err != nil || dsnID == "" {
		t.Fatalf("Bounce = %q, %v", dsnID, err)
	}
	if len(r.calls) != 1 || !slices.Equal(r.calls[0], []string{"bob@dest.test=bounced"}) {
		t.Errorf("DSN about %v, want bob only (carol was delivered)", r.calls)
	}
	m, err := s.Get(id)
	if err != nil || m.Recipients[0].State != StateBounced || m.DoneAt.IsZero() || !hasKind(m, "deleted", "deleted by the mail administrator") {
		t.Errorf("after Bounce: %+v, %v", m, err)
	}
	if _, err := s.Bounce(id, "again", r.build); !errors.Is(err, ErrFinished) {
		t.Errorf("second Bounce: %v", err)
	}
	// The null sender gets nothing.
	null := enqueue(t, s, "", "Subject: x\r\n\r\nx\r\n", "bob@dest.test")
	if dsnID, err := s.Bounce(null, "deleted", r.build); err != nil || dsnID != "" {
		t.Errorf("Bounce of a null-sender message = %q, %v", dsnID, err)
	}
}

func TestDelayNoticeOncePerRecipientAfterTheWarningTime(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC)}
	s := openTest(t, Options{Now: clock.Now, DelayWarning: 4 * time.Hour})
	id := enqueue(t, s, "alice@org.test", "Subject: x\r\n\r\nx\r\n", "bob@dest.test", "carol@dest.test")
	var r reports
	defer4 := []RcptOutcome{{Address: "bob@dest.test", Status: "4.4.1", Message: "connection refused"}, {Address: "carol@dest.test", Delivered: true}}

	clock.Add(3 * time.Hour)
	if _, dsnID, err := s.RecordAttempt(id, Attempt{}, defer4, r.dsn); err != nil || dsnID != "" {
		t.Fatalf("before the warning time: DSN %q, %v", dsnID, err)
	}
	clock.Add(90 * time.Minute)
	_, dsnID, err := s.RecordAttempt(id, Attempt{}, defer4[:1], r.dsn)
	if err != nil || dsnID == "" {
		t.Fatalf("after the warning time: DSN %q, %v", dsnID, err)
	}
	if len(r.calls) != 1 || !slices.Equal(r.calls[0], []string{"bob@dest.test=deferred"}) {
		t.Errorf("notice about %v, want bob as deferred", r.calls)
	}
	clock.Add(time.Hour)
	m, dsnID, err := s.RecordAttempt(id, Attempt{}, defer4[:1], r.dsn)
	if err != nil || dsnID != "" {
		t.Errorf("a second notice: %q, %v", dsnID, err)
	}
	if !hasKind(m, "dsn", "delay notice") || m.Recipients[0].DelayNotified.IsZero() {
		t.Errorf("history: %+v", m.Events)
	}

	// Off: no notice ever.
	off := openTest(t, Options{Now: clock.Now})
	id = enqueue(t, off, "alice@org.test", "Subject: x\r\n\r\nx\r\n", "bob@dest.test")
	clock.Add(24 * time.Hour)
	if _, dsnID, err := off.RecordAttempt(id, Attempt{}, defer4[:1], r.dsn); err != nil || dsnID != "" {
		t.Errorf("DelayWarning 0 sent a notice: %q, %v", dsnID, err)
	}
}

func TestHeldMessagesGetTheirDelayNoticeFromTheSweep(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC)}
	s := openTest(t, Options{Now: clock.Now, DelayWarning: 4 * time.Hour})
	held, err := s.Enqueue(context.Background(), Envelope{From: "alice@org.test", Recipients: []string{"bob@dest.test"}, Hold: "review"},
		[]byte("Subject: x\r\n\r\nheld body\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	enqueue(t, s, "alice@org.test", "Subject: x\r\n\r\nx\r\n", "carol@dest.test") // not held: RecordAttempt's job
	var r reports
	if ids, err := s.NotifyHeldDelays(r.build); err != nil || len(ids) != 0 {
		t.Fatalf("before the warning time: %v, %v", ids, err)
	}
	clock.Add(5 * time.Hour)
	ids, err := s.NotifyHeldDelays(r.build)
	if err != nil || len(ids) != 1 || len(r.calls) != 1 || !slices.Equal(r.calls[0], []string{"bob@dest.test=queued"}) {
		t.Fatalf("after the warning time: %v, %v, reports %v", ids, err, r.calls)
	}
	if body, _ := s.Body(ids[0]); !strings.Contains(string(body), "held body") {
		t.Errorf("the builder did not get the held message's body: %q", body)
	}
	if ids, err := s.NotifyHeldDelays(r.build); err != nil || len(ids) != 0 {
		t.Errorf("a second sweep: %v, %v", ids, err)
	}
	if m, _ := s.Get(held); !m.Held {
		t.Error("the notice released the message")
	}
}

// TestAnAttemptOfTheOldMethodDoesNotMoveTheNewChain: a deferral or skip
// reported for the method a recipient had before queue reapply leaves
// the new chain where it is; a delivery still counts.
func TestAnAttemptOfTheOldMethodDoesNotMoveTheNewChain(t *testing.T) {
	s := openTest(t, Options{})
	id, err := s.Enqueue(context.Background(), Envelope{From: "alice@org.test", Recipients: []string{"bob@dest.test", "carol@dest.test"},
		Decisions: []RcptDecision{{Chain: []string{"tls-verified", "bounce"}}, {Chain: []string{"tls-verified", "bounce"}}}}, []byte("Subject: x\r\n\r\nx\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	m, _, err := s.RecordAttempt(id, Attempt{}, []RcptOutcome{
		{Address: "bob@dest.test", Skip: true, Method: "pgp"},
		{Address: "carol@dest.test", Delivered: true, Method: "pgp"},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if bob := m.Recipients[0]; bob.Step != 0 || bob.State != StateQueued || bob.Attempts != 0 {
		t.Errorf("a skip of the old method moved bob: %+v", bob)
	}
	if carol := m.Recipients[1]; carol.State != StateDelivered {
		t.Errorf("a delivery by the old method was lost: %+v", carol)
	}
	m, _, err = s.RecordAttempt(id, Attempt{}, []RcptOutcome{{Address: "bob@dest.test", Skip: true, Method: "tls-verified"}}, nil)
	if err != nil || m.Recipients[0].Step != 1 {
		t.Errorf("a skip of the current method did not move bob: %+v, %v", m.Recipients[0], err)
	}
}

func hasKind(m *Message, kind, detail string) bool {
	for _, e := range m.Events {
		if e.Kind == kind && strings.Contains(e.Detail, detail) {
			return true
		}
	}
	return false
}

// TestAttemptSummaryCountsSkipsAndDropsApart: a skipped method (the
// recipient moves on, then bounces) is not a deferral, nor is a drop.
func TestAttemptSummaryCountsSkipsAndDropsApart(t *testing.T) {
	s := openTest(t, Options{})
	id, err := s.Enqueue(context.Background(), Envelope{From: "a@org.test", Recipients: []string{"b@dest.test", "c@dest.test"},
		Decisions: []RcptDecision{{Chain: []string{"pgp", "bounce"}}, {Chain: []string{"tls-verified", "drop"}}}}, []byte("Subject: x\r\n\r\nx\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	m, _, err := s.RecordAttempt(id, Attempt{}, []RcptOutcome{{Address: "b@dest.test", Skip: true}, {Address: "c@dest.test", Dropped: true}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !hasKind(m, "attempt", "delivered 0, deferred 0, bounced 0, skipped 1, dropped 1") {
		t.Errorf("history: %+v", m.Events)
	}
	m, _, err = s.RecordAttempt(id, Attempt{}, []RcptOutcome{{Address: "b@dest.test", Permanent: true, Status: "5.7.1"}}, nil)
	if err != nil || !hasKind(m, "attempt", "delivered 0, deferred 0, bounced 1") || m.Recipients[0].State != StateBounced {
		t.Errorf("after the bounce: %+v, %v", m, err)
	}
}

// TestReapplyKeepsAnAdminsHoldUnderAPolicyHold: an admin held it, a
// policy hold came and went with two reapplies: the admin's hold stays.
func TestReapplyKeepsAnAdminsHoldUnderAPolicyHold(t *testing.T) {
	s := openTest(t, Options{})
	id := enqueue(t, s, "alice@org.test", "Subject: x\r\n\r\nx\r\n", "bob@dest.test")
	if err := s.Hold(id); err != nil {
		t.Fatal(err)
	}
	decide := func(hold string) DecideFunc {
		return func(*Message, []byte) (Redecision, error) {
			return Redecision{Decisions: []RcptDecision{{Chain: []string{"tls"}}}, Hold: hold}, nil
		}
	}
	if _, _, err := s.Redecide(id, decide("dlp"), nil); err != nil {
		t.Fatal(err)
	}
	m, _, err := s.Redecide(id, decide(""), nil)
	if err != nil || !m.Held {
		t.Errorf("the admin's hold was lifted: %+v, %v", m, err)
	}
	// Bounced by an admin: a bounced event per recipient.
	var r reports
	if _, err := s.Bounce(id, "deleted by admin", r.build); err != nil {
		t.Fatal(err)
	}
	if m, _ := s.Get(id); !hasKind(m, "bounced", "bob@dest.test: deleted by admin") {
		t.Errorf("no per-recipient bounced event: %+v", m.Events)
	}
}

// TestReapplyKeepsAnAdminsRelease: released from a policy hold, the
// message is not held again for the same reason; a new reason holds it.
func TestReapplyKeepsAnAdminsRelease(t *testing.T) {
	s := openTest(t, Options{})
	id, err := s.Enqueue(context.Background(), Envelope{From: "a@org.test", Recipients: []string{"b@dest.test"}, Hold: "dlp"}, []byte("Subject: x\r\n\r\nx\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Release(id); err != nil {
		t.Fatal(err)
	}
	hold := func(h string) DecideFunc {
		return func(*Message, []byte) (Redecision, error) {
			return Redecision{Decisions: []RcptDecision{{Chain: []string{"tls"}}}, Hold: h}, nil
		}
	}
	if m, _, err := s.Redecide(id, hold("dlp"), nil); err != nil || m.Held {
		t.Errorf("held again for the hold the admin lifted: %+v, %v", m, err)
	}
	if m, _, err := s.Redecide(id, hold("dlp, legal"), nil); err != nil || !m.Held {
		t.Errorf("not held for a new reason: %+v, %v", m, err)
	}
}
