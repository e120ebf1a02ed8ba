package gateway

import (
	"container/heap"
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sealgate/sealgate/policy"
	"github.com/sealgate/sealgate/queue"
)

// schedulerStore is what the scheduler needs from the spool. queue.Store
// implements it. Pending is read once at start; afterwards the scheduler
// learns about work through wake. RecordAttempt is called once per
// delivery group and returns the updated message (and the ID of a DSN it
// enqueued, if any).
type schedulerStore interface {
	Get(id string) (*queue.Message, error)
	Body(id string) ([]byte, error)
	Pending() ([]queue.Due, error)
	RecordAttempt(id string, att queue.Attempt, outcomes []queue.RcptOutcome, dsn queue.DSNFunc) (*queue.Message, string, error)
	// DomainInfo and ObserveTLS are the TLS history of destinations: read
	// before a delivery (it may raise the TLS level), written after it.
	DomainInfo(domain string) (*queue.DomainInfo, error)
	ObserveTLS(obs queue.TLSObservation) error
}

// groupDeliverer delivers one message to the recipients of one
// destination and reports the attempt and a result per recipient. It
// never returns fewer outcomes than recipients it was given.
type groupDeliverer interface {
	deliver(ctx context.Context, req deliveryRequest) (queue.Attempt, []queue.RcptOutcome)
}

// scheduler decides when each spooled message is attempted. It keeps a
// timer heap of message IDs in memory (rebuilt from the spool at start),
// runs at most maxConcurrency deliveries at once, and never has more than
// one attempt of the same message in flight. There is no goroutine per
// waiting message: one loop sleeps until the earliest due time.
type scheduler struct {
	store          schedulerStore
	deliverer      groupDeliverer
	logger         *slog.Logger
	now            func() time.Time
	maxConcurrency int
	// smarthost routes every recipient as one group instead of per domain.
	smarthost bool
	// dsn builds a delivery status notification for bounced recipients.
	dsn func(m *queue.Message, bounced []queue.Recipient, body []byte) (queue.Envelope, []byte, error)
	// sign, when set, returns the message as it must leave (DKIM-signed).
	// It runs once per attempt of a message, not once per destination:
	// every destination gets the same outgoing form.
	sign func(id string, body []byte) []byte
	// tls decides the transport requirement of a destination; nil means
	// opportunistic TLS everywhere.
	tls *transportPolicy
	// sts finds destinations' MTA-STS policies (nil: MTA-STS off, tests).
	sts *mtastsResolver
	// tlsrpt, when set, counts TLS sessions for daily reports.
	tlsrpt *tlsReporter

	wakeCh  chan string
	doneCh  chan schedDone
	stopped chan struct{} // closed when Run returns

	mu       sync.Mutex
	timers   schedHeap
	due      map[string]time.Time // the live heap entry of each ID; others are stale
	inflight map[string]bool
	// again marks IDs woken while in flight: they are re-examined as
	// soon as the current attempt reports back.
	again   map[string]bool
	running sync.WaitGroup
}

type schedDone struct {
	id   string
	next time.Time // zero: nothing left to schedule
}

func newScheduler(store schedulerStore, d groupDeliverer, logger *slog.Logger, maxConcurrency int) *scheduler {
	if maxConcurrency <= 0 {
		maxConcurrency = 1
	}
	return &scheduler{
		store:          store,
		deliverer:      d,
		logger:         logger,
		now:            time.Now,
		maxConcurrency: maxConcurrency,
		wakeCh:         make(chan string, 1024),
		doneCh:         make(chan schedDone, maxConcurrency),
		stopped:        make(chan struct{}),
		due:            map[string]time.Time{},
		inflight:       map[string]bool{},
		again:          map[string]bool{},
	}
}

// Wake schedules id for an attempt now (a new message, an admin retry or
// release). It never blocks the caller for long: if the wake buffer is
// full, it waits for the loop, which drains it continuously.
func (s *scheduler) Wake(id string) {
	select {
	case s.wakeCh <- id:
	case <-s.stopped:
		// The spool has it; the next start picks it up.
	}
}

// Run loads the pending messages and schedules deliveries until ctx ends;
// then it waits for attempts in flight (their contexts are cancelled) and
// returns.
func (s *scheduler) Run(ctx context.Context) error {
	defer close(s.stopped)
	pending, err := s.store.Pending()
	if err != nil {
		return err
	}
	for _, p := range pending {
		s.schedule(p.ID, p.Next)
	}
	s.logger.Info("scheduler started", "pending", len(pending))

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	defer s.running.Wait()
	for {
		s.startDue(ctx)
		wait := time.Hour
		if next, ok := s.nextDue(); ok {
			wait = max(next.Sub(s.now()), 0)
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case id := <-s.wakeCh:
			s.schedule(id, s.now())
		case d := <-s.doneCh:
			s.finish(d)
		case <-timer.C:
		}
	}
}

func (s *scheduler) schedule(id string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.due[id]; ok && !cur.After(at) {
		return
	}
	s.due[id] = at
	heap.Push(&s.timers, schedEntry{at: at, id: id})
}

func (s *scheduler) finish(d schedDone) {
	s.mu.Lock()
	delete(s.inflight, d.id)
	again := s.again[d.id]
	delete(s.again, d.id)
	s.mu.Unlock()
	switch {
	case again:
		s.schedule(d.id, s.now())
	case !d.next.IsZero():
		s.schedule(d.id, d.next)
	}
}

// nextDue returns the earliest live due time.
func (s *scheduler) nextDue() (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.timers.Len() > 0 {
		top := s.timers[0]
		if at, ok := s.due[top.id]; !ok || !at.Equal(top.at) {
			heap.Pop(&s.timers) // stale
			continue
		}
		return top.at, true
	}
	return time.Time{}, false
}

// startDue starts attempts for every due message while capacity lasts.
// A message already in flight stays in the heap and is picked up after
// its current attempt reports back.
func (s *scheduler) startDue(ctx context.Context) {
	now := s.now()
	for {
		s.mu.Lock()
		if len(s.inflight) >= s.maxConcurrency || s.timers.Len() == 0 {
			s.mu.Unlock()
			return
		}
		top := s.timers[0]
		if at, ok := s.due[top.id]; !ok || !at.Equal(top.at) {
			heap.Pop(&s.timers)
			s.mu.Unlock()
			continue
		}
		if top.at.After(now) {
			s.mu.Unlock()
			return
		}
		if s.inflight[top.id] {
			// Leave it; finish() re-schedules with the attempt's own
			// result, and the earlier of the two wins.
			heap.Pop(&s.timers)
			delete(s.due, top.id)
			s.again[top.id] = true
			s.mu.Unlock()
			continue
		}
		heap.Pop(&s.timers)
		delete(s.due, top.id)
		s.inflight[top.id] = true
		s.mu.Unlock()

		s.running.Add(1)
		go func(id string) {
			defer s.running.Done()
			next := s.attempt(ctx, id)
			s.doneCh <- schedDone{id: id, next: next}
		}(top.id)
	}
}

// attempt delivers every due recipient of one message, grouped by
// destination, and returns when the message is next due (zero if it is
// finished, held or gone).
func (s *scheduler) attempt(ctx context.Context, id string) time.Time {
	log := s.logger.With("queue_id", id)
	m, err := s.store.Get(id)
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
	now := s.now()
	groups := s.dueGroups(m, now)
	if len(groups) == 0 {
		return nextAttempt(m)
	}
	body, err := s.store.Body(id)
	if err != nil {
		log.Error("cannot read message body", "err", err)
		return s.now().Add(time.Minute)
	}
	outgoing := body
	if s.sign != nil {
		outgoing = s.sign(id, body)
	}
	for _, g := range groups {
		if ctx.Err() != nil {
			break
		}
		att, outcomes := s.runMethod(ctx, log, m, g, outgoing)
		if ctx.Err() != nil {
			// Shutting down: the attempt was cut short and says nothing
			// about the destination; leave the recipients as they were.
			break
		}
		dsn := func(m *queue.Message, bounced []queue.Recipient) (queue.Envelope, []byte, error) {
			return s.dsn(m, bounced, body)
		}
		updated, dsnID, err := s.store.RecordAttempt(id, att, outcomes, dsn)
		if err != nil {
			log.Error("cannot record delivery attempt", "err", err)
			return s.now().Add(time.Minute)
		}
		m = updated
		if dsnID != "" {
			log.Info("delivery status notification queued", "dsn_id", dsnID)
			s.schedule(dsnID, s.now())
		}
	}
	return nextAttempt(m)
}

type rcptGroup struct {
	domain  string
	method  string // the chain method these recipients are at
	hasNext bool   // their chains go on after it
	rcpts   []string
}

// runMethod carries out the current chain method for one group: a TLS
// delivery (tls, tls-verified), a terminal (drop, bounce), or a hold for
// methods this gateway does not provide yet.
func (s *scheduler) runMethod(ctx context.Context, log *slog.Logger, m *queue.Message, g rcptGroup, outgoing []byte) (queue.Attempt, []queue.RcptOutcome) {
	id := m.ID
	var err error
	switch policy.Method(g.method) {
	case policy.MethodDrop:
		return s.terminal(g, queue.RcptOutcome{Dropped: true, Status: "2.0.0",
			Message: "dropped by policy: no method of the chain could deliver and the chain ends in drop"})
	case policy.MethodBounce:
		return s.terminal(g, queue.RcptOutcome{Permanent: true, Status: "5.7.10",
			Message: "returned by policy: no method of the chain could deliver (TLS with a verified certificate was required) and the chain ends in bounce"})
	case policy.MethodPGP, policy.MethodSMIME, policy.MethodEscrow:
		return s.terminal(g, queue.RcptOutcome{Status: "4.7.0",
			Message: "held: the policy chain needs " + g.method + ", which this gateway does not provide yet"})
	}
	req := deliveryRequest{
		ID:         id,
		From:       m.Envelope.From,
		Domain:     g.domain,
		Recipients: g.rcpts,
		Body:       outgoing,
		RequireTLS: m.Envelope.RequireTLS,
		SMTPUTF8:   needsSMTPUTF8(m.Envelope.From, g.rcpts),
	}
	var history *queue.DomainInfo
	if g.domain != "" {
		if history, err = s.store.DomainInfo(g.domain); err != nil {
			// Never deliver without knowing the floor the history sets.
			log.Error("cannot read domain TLS history", "domain", g.domain, "err", err)
			return s.terminal(g, queue.RcptOutcome{Status: "4.3.0", Message: "internal error reading the domain's TLS history"})
		}
	}
	var sts *policy.MTASTSPolicy
	if s.sts != nil && g.domain != "" {
		sts = s.sts.policyFor(ctx, g.domain)
	}
	if s.tls != nil {
		req.TLS = s.tls.requirement(g.domain, m.Envelope.RequireTLS, history, sts)
	} else {
		req.TLS = policy.DecideTLS(policy.TLSInputs{Domain: g.domain, Configured: policy.TLSMay, RequireTLS: m.Envelope.RequireTLS})
	}
	if policy.Method(g.method) == policy.MethodTLSVerified && req.TLS.Level < policy.TLSVerify {
		req.TLS.Level = policy.TLSVerify
		by := "policy chain tls-verified"
		if rules := recipientRules(m, g.rcpts); rules != "" {
			by += " (rule " + rules + ")"
		}
		req.TLS.RequiredBy = strings.TrimPrefix(req.TLS.RequiredBy+", "+by, ", ")
	}
	if s.tlsrpt != nil && g.domain != "" {
		domain, tlsReq := g.domain, req.TLS
		req.observe = func(ts tlsSession) { s.tlsrpt.record(domain, tlsReq, ts) }
	}
	att, outcomes := s.deliverer.deliver(ctx, req)
	if g.domain != "" && att.MXHost != "" {
		obs := queue.TLSObservation{Domain: g.domain, Connected: true, TLSVersion: att.TLSVersion,
			Verified: att.CertVerified, MTASTSMode: req.TLS.MTASTSMode(), DANE: att.DANE != ""}
		if err := s.store.ObserveTLS(obs); err != nil {
			log.Error("cannot record domain TLS history", "domain", g.domain, "err", err)
		}
	}
	if policy.Method(g.method) == policy.MethodTLSVerified {
		for i := range outcomes {
			if !outcomes[i].Delivered && !outcomes[i].Permanent && outcomes[i].Status == "4.7.5" && g.hasNext {
				outcomes[i].Skip = true
			}
		}
	}
	return att, outcomes
}

// recipientRules names the policy rules that decided the group's chain.
func recipientRules(m *queue.Message, rcpts []string) string {
	for _, r := range m.Recipients {
		if len(rcpts) > 0 && r.Address == rcpts[0] {
			return strings.Join(r.Rules, ", ")
		}
	}
	return ""
}

// terminal reports the same outcome for every recipient of the group,
// with no network involved.
func (s *scheduler) terminal(g rcptGroup, o queue.RcptOutcome) (queue.Attempt, []queue.RcptOutcome) {
	out := make([]queue.RcptOutcome, len(g.rcpts))
	for i, r := range g.rcpts {
		out[i] = o
		out[i].Address = r
	}
	return queue.Attempt{Destination: g.domain, Recipients: g.rcpts, Reply: "policy: " + g.method + ": " + o.Message}, out
}

// dueGroups groups the recipients that are pending and due by
// destination domain (or into one group when relaying via a smarthost),
// keeping RCPT order.
func (s *scheduler) dueGroups(m *queue.Message, now time.Time) []rcptGroup {
	var groups []rcptGroup
	index := map[string]int{}
	for _, r := range m.Recipients {
		if r.State.Final() || r.NextAttempt.After(now) {
			continue
		}
		domain := ""
		if !s.smarthost {
			domain = addressDomain(r.Address)
		}
		// Recipients of one message that are at different methods are
		// separate delivery groups of the same spooled body.
		method := r.Method()
		key := domain + "\x00" + method + "\x00" + strconv.FormatBool(r.Step+1 < len(r.Chain))
		i, ok := index[key]
		if !ok {
			i = len(groups)
			index[key] = i
			groups = append(groups, rcptGroup{domain: domain, method: method, hasNext: r.Step+1 < len(r.Chain)})
		}
		groups[i].rcpts = append(groups[i].rcpts, r.Address)
	}
	return groups
}

// nextAttempt is the earliest next attempt among pending recipients, or
// zero when none is pending.
func nextAttempt(m *queue.Message) time.Time {
	var next time.Time
	for _, r := range m.Recipients {
		if r.State.Final() {
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

// addressDomain returns the lower-cased domain part of an address.
func addressDomain(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return ""
	}
	return strings.ToLower(addr[at+1:])
}

func needsSMTPUTF8(from string, rcpts []string) bool {
	if !isASCII(from) {
		return true
	}
	for _, r := range rcpts {
		if !isASCII(r) {
			return true
		}
	}
	return false
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

type schedEntry struct {
	at time.Time
	id string
}

// schedHeap is a min-heap of due times.
type schedHeap []schedEntry

func (h schedHeap) Len() int           { return len(h) }
func (h schedHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h schedHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *schedHeap) Push(x any)        { *h = append(*h, x.(schedEntry)) }
func (h *schedHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
