package scheduler

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sealgate/sealgate/gateway/delivery"
	"github.com/sealgate/sealgate/internal/mailtext"
	"github.com/sealgate/sealgate/policy"
	"github.com/sealgate/sealgate/queue"
)

// attempt carries out every due recipient of one message, grouped by
// destination and method, and returns when the message is next due
// (zero if it is finished, held or gone).
func (s *Scheduler) attempt(ctx context.Context, id string) time.Time {
	log := s.opts.Logger.With("queue_id", id)
	m, err := s.opts.Store.Get(id)
	if err != nil {
		if !errors.Is(err, queue.ErrNotFound) {
			log.Error("cannot read message", "err", err)
			return s.now().Add(time.Minute)
		}
		return time.Time{}
	}
	if m.Held {
		return time.Time{}
	}
	groups := s.dueGroups(m, s.now())
	if len(groups) == 0 {
		return nextAttempt(m)
	}
	var body *spooled    // opened once a group has a slot
	var headRead *[]byte // the start of the message, for notices, once read
	inLine := map[string]bool{}
	defer func() {
		if body != nil {
			body.release()
		}
	}()
	signed := &signCache{sign: s.opts.Sign, id: id}
	for _, g := range groups {
		if ctx.Err() != nil {
			break
		}
		if !s.slots.take(g.Domain, id) {
			// The destination is full: the message waits in its line
			// and is woken when a slot is handed to it.
			for _, r := range g.Rcpts {
				inLine[r] = true
			}
			continue
		}
		if body == nil {
			var err error
			if body, err = s.openBody(ctx, id); err != nil {
				s.releaseSlot(g.Domain)
				if ctx.Err() != nil {
					return s.now() // shutting down; the spool keeps it due
				}
				log.Error("cannot read message body", "err", err)
				return s.now().Add(time.Minute)
			}
		}
		att, outcomes := s.runGroup(ctx, log, m, g, body, signed)
		s.releaseSlot(g.Domain)
		for i := range outcomes {
			outcomes[i].Method = g.Method
		}
		cut := ctx.Err() != nil
		if cut {
			// Shutting down: the attempt was cut short and says nothing
			// about the destination; leave the recipients it did not
			// settle as they were. What the destination did settle is
			// recorded: a message it accepted must not go out again
			// after the restart.
			if outcomes = settled(outcomes); len(outcomes) == 0 {
				break
			}
		}
		// A notice (bounce, delay) may be built inside the spool's commit:
		// the start of the message it returns is read before, never in
		// there (a damaged body file is quarantined by the read, and that
		// is a commit of its own).
		// Only when a notice can come of this attempt (a recipient not
		// delivered, or one deferred before), and once per attempt. A
		// start that cannot be read still gets its notice, without the
		// returned header.
		var head []byte
		if headRead == nil && mayNotify(m, outcomes) {
			h, err := body.head(dsnHead)
			if err != nil {
				log.Warn("cannot read the message's start for a notice; it goes without the returned header", "err", err)
			}
			headRead = &h
		}
		if headRead != nil {
			head = *headRead
		}
		dsn := func(m *queue.Message, bounced []queue.Recipient) (queue.Envelope, []byte, error) {
			return s.opts.DSN(m, bounced, head)
		}
		updated, dsnID, err := s.opts.Store.RecordAttempt(id, att, outcomes, dsn)
		if err != nil {
			log.Error("cannot record delivery attempt", "err", err)
			return s.now().Add(time.Minute)
		}
		m = updated
		if s.opts.OnAttempt != nil {
			s.opts.OnAttempt(m, att, outcomes)
		}
		if m.Held || !m.DoneAt.IsZero() {
			// Held, bounced or re-decided by an admin while this attempt
			// ran: the groups not sent yet wait for what that says.
			if dsnID != "" {
				log.Info("delivery status notification queued", "dsn_id", dsnID)
				s.schedule(dsnID, s.now())
			}
			break
		}
		if dsnID != "" {
			log.Info("delivery status notification queued", "dsn_id", dsnID)
			s.schedule(dsnID, s.now())
		}
		if cut {
			break
		}
	}
	return nextAttemptExcept(m, inLine)
}

// mayNotify reports whether recording outcomes may queue a delivery
// status notification: a recipient of this attempt not delivered nor
// dropped (bounced, deferred), or one of the message deferred before (a
// delay notice may fall due).
func mayNotify(m *queue.Message, outcomes []queue.RcptOutcome) bool {
	for _, o := range outcomes {
		if !o.Delivered && !o.Dropped {
			return true
		}
	}
	for _, r := range m.Recipients {
		if r.State == queue.StateDeferred {
			return true
		}
	}
	return false
}

// releaseSlot gives back a destination slot and wakes the message it is
// handed to, if any.
func (s *Scheduler) releaseSlot(dest string) {
	if w := s.slots.release(dest); w != "" {
		s.schedule(w, s.now())
	}
}

// settled keeps the outcomes that are final: delivered, bounced or
// dropped.
func settled(outcomes []queue.RcptOutcome) []queue.RcptOutcome {
	var out []queue.RcptOutcome
	for _, o := range outcomes {
		if o.Delivered || o.Permanent || o.Dropped {
			out = append(out, o)
		}
	}
	return out
}

// runGroup asks the group's method what to do and does it: settle the
// recipients without delivery, or deliver the form the method made over
// the transport the TLS decision requires.
func (s *Scheduler) runGroup(ctx context.Context, log *slog.Logger, m *queue.Message, g Group, body Body, signed *signCache) (queue.Attempt, []queue.RcptOutcome) {
	var act Action
	if h, ok := s.opts.Methods[g.Method]; ok {
		act = h.Prepare(ctx, m, g, body)
	} else {
		act = notProvided(g)
	}
	if act.Outcome != nil || act.Send == nil {
		if act.Outcome == nil { // a handler that decided nothing holds, never loses
			act = Action{Outcome: &queue.RcptOutcome{Status: "4.3.0", Message: "method " + g.Method + " produced no message"}}
		}
		return terminal(g, *act.Outcome, "")
	}

	req := delivery.Request{
		ID:         m.ID,
		From:       m.Envelope.From,
		Domain:     g.Domain,
		Recipients: g.Rcpts,
		Body:       signed.form(act.Send),
		RequireTLS: m.Envelope.RequireTLS,
		SMTPUTF8:   mailtext.NeedsSMTPUTF8(m.Envelope.From, g.Rcpts),
	}
	var history *policy.TLSHistory
	var info *queue.DomainInfo
	if g.Domain != "" {
		var err error
		info, err = s.opts.Store.DomainInfo(g.Domain)
		if err != nil {
			// Never deliver without knowing the floor the history sets.
			log.Error("cannot read domain TLS history", "domain", g.Domain, "err", err)
			return terminal(g, queue.RcptOutcome{Status: "4.3.0", Message: "internal error reading the domain's TLS history"},
				"the domain's TLS history could not be read")
		}
		if info != nil {
			history = &policy.TLSHistory{TLSSeen: info.TLSSeen, Verified: info.Verified,
				Since: info.FirstSeen.UTC().Format(time.DateOnly)}
		}
	}
	var sts *policy.MTASTSPolicy
	if s.opts.MTASTS != nil && g.Domain != "" {
		sts = s.opts.MTASTS.PolicyFor(ctx, g.Domain)
	}
	req.TLS = s.tls.Load().Requirement(g.Domain, m.Envelope.RequireTLS, history, sts)
	if act.VerifiedTLS && req.TLS.Level < policy.TLSVerify {
		req.TLS.Level = policy.TLSVerify
		req.TLS.RequiredBy = strings.TrimPrefix(req.TLS.RequiredBy+", "+act.RequiredBy, ", ")
	}
	if s.opts.TLSReports != nil && g.Domain != "" {
		domain, tlsReq := g.Domain, req.TLS
		req.Observe = func(ts delivery.TLSSession) { s.opts.TLSReports.Record(domain, tlsReq, ts) }
	}
	att, outcomes := s.opts.Deliverer.Deliver(ctx, req)
	att.Protection = act.Protection
	if act.Delivered != nil {
		act.Delivered(outcomes)
	}
	if g.Domain != "" && att.MXHost != "" {
		obs := queue.TLSObservation{Domain: g.Domain, Connected: true, TLSVersion: att.TLSVersion,
			Verified: att.CertVerified, MTASTSMode: req.TLS.MTASTSMode(), DANE: att.DANE != ""}
		if !observationChanges(info, obs, s.now()) {
			// Nothing the history would learn: no spool commit.
		} else if err := s.opts.Store.ObserveTLS(obs); err != nil {
			log.Error("cannot record domain TLS history", "domain", g.Domain, "err", err)
		}
	}
	if act.SkipOnTLSFailure {
		for i := range outcomes {
			if !outcomes[i].Delivered && !outcomes[i].Permanent && outcomes[i].Status == "4.7.5" {
				outcomes[i].Skip = true
			}
		}
	}
	return att, outcomes
}

// signCache DKIM-signs each distinct outgoing form of one message once
// per attempt: every group that sends the spooled body as is shares one
// signature, a transformed form (an encrypted message) gets its own.
type signCache struct {
	sign     func(id string, body delivery.Body) delivery.Body
	id       string
	in, outs []delivery.Body
}

func (c *signCache) form(body delivery.Body) delivery.Body {
	if c.sign == nil {
		return body
	}
	for i, b := range c.in {
		if sameBody(b, body) {
			return c.outs[i]
		}
	}
	out := c.sign(c.id, body)
	c.in, c.outs = append(c.in, body), append(c.outs, out)
	return out
}

// terminal reports the same outcome for every recipient of the group,
// with no network involved; why says why no connection was made ("":
// what the chain's method decided).
func terminal(g Group, o queue.RcptOutcome, why string) (queue.Attempt, []queue.RcptOutcome) {
	out := make([]queue.RcptOutcome, len(g.Rcpts))
	for i, r := range g.Rcpts {
		out[i] = o
		out[i].Address = r
	}
	if why == "" {
		switch m := " (method " + g.Method + ")"; {
		case o.Skip:
			why = "skipped by policy" + m
		case o.Dropped:
			why = "dropped by policy" + m
		case o.Delivered:
			why = "handed over by policy" + m
		case o.Permanent:
			why = "refused by policy" + m
		default:
			why = "held by policy" + m
		}
	}
	return queue.Attempt{Destination: g.Domain, Recipients: g.Rcpts, Reply: "policy: " + g.Method + ": " + o.Message,
		NoConnection: why}, out
}

// dueGroups groups the recipients that are pending and due by
// destination domain (or into one group when relaying via a smarthost)
// and chain method, keeping RCPT order.
func (s *Scheduler) dueGroups(m *queue.Message, now time.Time) []Group {
	var groups []Group
	index := map[string]int{}
	for _, r := range m.Recipients {
		if r.State.Final() || r.NextAttempt.After(now) {
			continue
		}
		domain := ""
		if !s.opts.Smarthost {
			domain = mailtext.Domain(r.Address)
		}
		// Recipients of one message that are at different methods are
		// separate delivery groups of the same spooled body.
		method := r.Method()
		hasNext := r.Step+1 < len(r.Chain)
		key := domain + "\x00" + method + "\x00" + strconv.FormatBool(hasNext)
		if _, solo := s.opts.Methods[method].(PerRecipient); solo {
			key += "\x00" + r.Address
		}
		i, ok := index[key]
		if !ok {
			i = len(groups)
			index[key] = i
			groups = append(groups, Group{Domain: domain, Method: method, HasNext: hasNext})
		}
		groups[i].Rcpts = append(groups[i].Rcpts, r.Address)
	}
	return groups
}

// nextAttempt is the earliest next attempt among pending recipients, or
// zero when none is pending.
func nextAttempt(m *queue.Message) time.Time { return nextAttemptExcept(m, nil) }

// nextAttemptExcept is nextAttempt leaving out the recipients waiting in
// a destination's line (inLine): a slot handed to the message wakes it.
func nextAttemptExcept(m *queue.Message, inLine map[string]bool) time.Time {
	var next time.Time
	for _, r := range m.Recipients {
		if r.State.Final() || inLine[r.Address] {
			continue
		}
		t := r.NextAttempt
		if t.IsZero() {
			t = time.Unix(0, 0) // pending without a schedule: due at once
		}
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	return next
}

// observationRefresh is how stale a domain's "last seen" may get before
// a delivery that teaches its history nothing new is recorded anyway.
const observationRefresh = 10 * time.Minute

// observationChanges reports whether recording obs would change what the
// TLS history knows of its domain (info, read before the delivery): a
// first sighting, TLS where none was seen, a new version, a verified
// certificate, a new MTA-STS mode, DANE — or a "last seen" grown stale.
// A delivery that teaches nothing costs no spool commit.
func observationChanges(info *queue.DomainInfo, obs queue.TLSObservation, now time.Time) bool {
	switch {
	case info == nil, now.Sub(info.LastSeen) >= observationRefresh:
		return true
	case obs.TLSVersion != "" && (!info.TLSSeen || !slices.Contains(info.TLSVersions, obs.TLSVersion)):
		return true
	case obs.TLSVersion != "" && obs.Verified && !info.Verified:
		return true
	case obs.MTASTSMode != "" && obs.MTASTSMode != info.MTASTSMode:
		return true
	case obs.DANE && !info.DANE:
		return true
	}
	return false
}
