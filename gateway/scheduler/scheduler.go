package scheduler

import (
	"container/heap"
	"context"
	"github.com/sealgate/sealgate/gateway/delivery"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sealgate/sealgate/policy"
	"github.com/sealgate/sealgate/queue"
	"golang.org/x/sync/semaphore"
)

// Options are what a scheduler works with. Store and Deliverer are
// required; nil for the others means the documented default.
type Options struct {
	Store     Store
	Deliverer Deliverer
	Logger    *slog.Logger
	Now       func() time.Time // nil: time.Now
	// MaxConcurrency bounds attempts in flight (at least 1).
	MaxConcurrency int
	// MaxBytesInFlight bounds the message bodies attempts hold in memory
	// together (0: no bound): an attempt waits for room before it reads
	// its body. A message larger than the bound goes out alone.
	MaxBytesInFlight int64
	// MaxPerDestination bounds deliveries in flight to one destination
	// domain (or the smarthost); 0 means MaxConcurrency. A message whose
	// destination is full waits in line without holding a global slot.
	MaxPerDestination int
	// Smarthost routes every recipient as one group instead of per
	// destination domain.
	Smarthost bool
	// Methods are the chain-method handlers (nil: Builtin()). A method
	// without a handler holds its recipients ("not provided").
	Methods Methods
	// DSN builds a delivery status notification for bounced recipients
	// (required as soon as a recipient can bounce). It is given the
	// start of the message (dsnHead octets at most), which holds the
	// header a notification returns.
	DSN func(m *queue.Message, bounced []queue.Recipient, body []byte) (queue.Envelope, []byte, error)
	// Sign, when set, returns a message as it must leave (DKIM-signed:
	// the signature in front of the body, which it reads once and does
	// not copy). It runs once per distinct outgoing form and attempt of
	// a message, not once per destination.
	Sign func(id string, body delivery.Body) delivery.Body
	// TLS decides the transport requirement of a destination; nil means
	// opportunistic TLS everywhere.
	TLS *policy.TransportPolicy
	// MTASTS finds destinations' MTA-STS policies (nil: MTA-STS off).
	MTASTS MTASTSLookup
	// TLSReports, when set, counts TLS sessions for daily reports.
	TLSReports TLSReporter
	// OnAttempt, when set, hears of each recorded attempt (metrics).
	OnAttempt func(m *queue.Message, att queue.Attempt, outcomes []queue.RcptOutcome)
	// LoadRetry is the first wait before reading the pending list again
	// when the spool cannot list it at start (0: one second); it doubles
	// up to maxLoadRetry.
	LoadRetry time.Duration
}

// maxLoadRetry bounds the wait between attempts to read the pending list.
const maxLoadRetry = time.Minute

// Scheduler decides when each spooled message is attempted. It keeps a
// timer heap of message IDs in memory, runs at most MaxConcurrency
// deliveries at once, and never has more than one attempt of the same
// message in flight.
type Scheduler struct {
	opts  Options
	tls   atomic.Pointer[policy.TransportPolicy] // Options.TLS, swapped on reload
	now   func() time.Time
	bytes *semaphore.Weighted // nil: no bound

	wakeCh  chan string
	doneCh  chan schedDone
	slots   *destSlots
	stopped chan struct{} // closed when Run returns
	loaded  atomic.Bool   // the pending list is read: every spooled message is scheduled

	mu       sync.Mutex
	timers   schedHeap
	due      map[string]time.Time // the live heap entry of each ID; others are stale
	inflight map[string]bool
	// again marks IDs woken while in flight: they are re-examined as
	// soon as the current attempt reports back.
	again   map[string]bool
	running sync.WaitGroup
	// loops counts turns of the Run loop: a test reads it to see that a
	// full scheduler sleeps instead of spinning.
	loops atomic.Int64
}

type schedDone struct {
	id   string
	next time.Time // zero: nothing left to schedule
}

// New returns a scheduler; Run starts it.
func New(o Options) *Scheduler {
	if o.MaxConcurrency <= 0 {
		o.MaxConcurrency = 1
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Methods == nil {
		o.Methods = Builtin()
	}
	var bytes *semaphore.Weighted
	if o.MaxBytesInFlight > 0 {
		bytes = semaphore.NewWeighted(o.MaxBytesInFlight)
	}
	if o.LoadRetry <= 0 {
		o.LoadRetry = time.Second
	}
	if o.MaxPerDestination <= 0 {
		o.MaxPerDestination = o.MaxConcurrency
	}
	s := &Scheduler{
		bytes:    bytes,
		opts:     o,
		now:      o.Now,
		wakeCh:   make(chan string, 1024),
		doneCh:   make(chan schedDone, o.MaxConcurrency),
		slots:    newDestSlots(o.MaxPerDestination),
		stopped:  make(chan struct{}),
		due:      map[string]time.Time{},
		inflight: map[string]bool{},
		again:    map[string]bool{},
	}
	s.tls.Store(o.TLS)
	return s
}

// SetTransportPolicy swaps the TLS policy deliveries are decided under
// (a reload); attempts already running finish under the old one.
func (s *Scheduler) SetTransportPolicy(p *policy.TransportPolicy) { s.tls.Store(p) }

// Wake schedules id for an attempt now (a new message, an admin retry or
// release). It never blocks the caller for long: if the wake buffer is
// full, it waits for the loop, which drains it continuously.
func (s *Scheduler) Wake(id string) {
	select {
	case s.wakeCh <- id:
	case <-s.stopped:
		// The spool has it; the next start picks it up.
	}
}

// Loaded reports whether the scheduler has read the spool's pending list,
// i.e. whether every spooled message will be attempted; until then the
// node is not ready.
func (s *Scheduler) Loaded() bool { return s.loaded.Load() }

// Run loads the pending messages and schedules deliveries until ctx ends;
// then it waits for attempts in flight (their contexts are cancelled) and
// returns nil. A spool that cannot list its pending messages does not stop
// it: it retries (see LoadRetry) until the list loads or ctx ends.
func (s *Scheduler) Run(ctx context.Context) error {
	defer close(s.stopped)
	if !s.load(ctx) {
		return nil
	}

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	defer s.running.Wait()
	for {
		s.loops.Add(1)
		s.startDue(ctx)
		wait := time.Hour
		if next, ok := s.nextDue(); ok && !s.full() {
			wait = max(next.Sub(s.now()), 0)
		}
		// At capacity nothing can start before an attempt reports back on
		// doneCh: sleep until then (or a wake, or the next due time once
		// there is room), never spin on a due time we cannot act on.
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

// full reports whether every delivery slot is taken.
func (s *Scheduler) full() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.inflight) >= s.opts.MaxConcurrency
}

// load reads the pending list, retrying with backoff while the spool
// cannot list it. Meanwhile intake goes on and its wakes are scheduled, so
// Wake never blocks. It returns false if ctx ends first.
func (s *Scheduler) load(ctx context.Context) bool {
	wait := s.opts.LoadRetry
	for {
		pending, err := s.opts.Store.Pending()
		if err == nil {
			for _, p := range pending {
				s.schedule(p.ID, p.Next)
			}
			s.loaded.Store(true)
			s.opts.Logger.Info("scheduler started", "pending", len(pending))
			return true
		}
		s.opts.Logger.Error("cannot read the pending messages: delivery waits, node not ready", "err", err, "retry_in", wait)
		retry := time.NewTimer(wait)
	waiting:
		for {
			select {
			case <-ctx.Done():
				retry.Stop()
				return false
			case id := <-s.wakeCh:
				s.schedule(id, s.now())
			case <-retry.C:
				break waiting
			}
		}
		wait = min(2*wait, maxLoadRetry)
	}
}

func (s *Scheduler) schedule(id string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.due[id]; ok && !cur.After(at) {
		return
	}
	s.due[id] = at
	heap.Push(&s.timers, schedEntry{at: at, id: id})
}

func (s *Scheduler) finish(d schedDone) {
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
func (s *Scheduler) nextDue() (time.Time, bool) {
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
func (s *Scheduler) startDue(ctx context.Context) {
	now := s.now()
	for {
		s.mu.Lock()
		if len(s.inflight) >= s.opts.MaxConcurrency || s.timers.Len() == 0 {
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
			for _, w := range s.slots.drop(id) {
				s.schedule(w, s.now())
			}
			s.doneCh <- schedDone{id: id, next: next}
		}(top.id)
	}
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
