package scheduler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealgate/sealgate/gateway/delivery"
	"github.com/sealgate/sealgate/queue"
)

// memStore is a scheduler-only stand-in for the spool: recipients are
// delivered or deferred by a fixed delay, nothing else.
type memStore struct {
	gets     atomic.Int64 // Get calls: how many attempts have started
	mu       sync.Mutex
	msgs     map[string]*queue.Message
	deferFor time.Duration
	// pendingFails makes that many Pending calls fail first.
	pendingFails int
	// fileBodies: bodies are streamed from files (not inline), of the
	// message's Size.
	fileBodies bool
}

// fileBody is a body the spool keeps in a file: its size is what the
// record says, and it is read as a stream.
type fileBody struct {
	BytesBody
	size int64
}

func (f fileBody) Size() int64  { return f.size }
func (f fileBody) Inline() bool { return false }

func (s *memStore) add(id string, held bool, rcpts ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := &queue.Message{ID: id, Held: held}
	for _, r := range rcpts {
		m.Recipients = append(m.Recipients, queue.Recipient{Address: r, State: queue.StateQueued})
	}
	s.msgs[id] = m
}

func (s *memStore) Get(id string) (*queue.Message, error) {
	s.gets.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.msgs[id]
	if !ok {
		return nil, queue.ErrNotFound
	}
	c := *m
	c.Recipients = append([]queue.Recipient(nil), m.Recipients...)
	return &c, nil
}

// OpenBody returns a body of the message's Size (a short one when 0).
func (s *memStore) OpenBody(id string) (queue.Spooled, error) {
	body := "Subject: x\r\n\r\nx\r\n"
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.msgs[id]; m != nil && s.fileBodies {
		return fileBody{BytesBody(body), m.Size}, nil
	} else if m != nil && m.Size > int64(len(body)) {
		body += strings.Repeat("x", int(m.Size)-len(body))
	}
	return BytesBody(body), nil
}

func (s *memStore) DomainInfo(string) (*queue.DomainInfo, error) { return nil, nil }
func (s *memStore) ObserveTLS(queue.TLSObservation) error        { return nil }

func (s *memStore) Pending() ([]queue.Due, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pendingFails > 0 {
		s.pendingFails--
		return nil, errors.New("spool unavailable")
	}
	var due []queue.Due
	for id, m := range s.msgs {
		if next := nextAttempt(m); !next.IsZero() && !m.Held {
			due = append(due, queue.Due{ID: id, Next: next})
		}
	}
	return due, nil
}

func (s *memStore) RecordAttempt(id string, att queue.Attempt, outcomes []queue.RcptOutcome, dsn queue.DSNFunc) (*queue.Message, string, error) {
	s.mu.Lock()
	m := s.msgs[id]
	for _, o := range outcomes {
		for i := range m.Recipients {
			r := &m.Recipients[i]
			if r.Address != o.Address {
				continue
			}
			r.Attempts++
			if o.Delivered {
				r.State = queue.StateDelivered
			} else {
				r.State = queue.StateDeferred
				r.NextAttempt = time.Now().Add(s.deferFor)
			}
		}
	}
	s.mu.Unlock()
	c, err := s.Get(id)
	return c, "", err
}

// gateDeliverer records concurrency and lets the test decide outcomes.
type gateDeliverer struct {
	mu       sync.Mutex
	inFlight map[string]int // per message ID
	maxAll   int
	cur      int
	calls    []delivery.Request
	release  chan struct{}
	fail     map[string]bool // recipient → deferred
}

func (d *gateDeliverer) Deliver(ctx context.Context, req delivery.Request) (queue.Attempt, []queue.RcptOutcome) {
	d.mu.Lock()
	d.calls = append(d.calls, req)
	d.inFlight[req.ID]++
	d.cur++
	d.maxAll = max(d.maxAll, d.cur)
	d.mu.Unlock()
	if d.release != nil {
		select {
		case <-d.release:
		case <-ctx.Done():
		}
	}
	d.mu.Lock()
	d.inFlight[req.ID]--
	d.cur--
	var out []queue.RcptOutcome
	for _, r := range req.Recipients {
		out = append(out, queue.RcptOutcome{Address: r, Delivered: !d.fail[r]})
	}
	d.mu.Unlock()
	return queue.Attempt{Destination: req.Domain, Recipients: req.Recipients}, out
}

func runScheduler(t *testing.T, st Store, d Deliverer, limit int) *Scheduler {
	t.Helper()
	s := New(Options{Store: st, Deliverer: d, MaxConcurrency: limit,
		DSN: func(*queue.Message, []queue.Recipient, []byte) (queue.Envelope, []byte, error) {
			t.Error("no DSN expected")
			return queue.Envelope{}, nil, nil
		}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return s
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; !cond(); i++ {
		if i == 1000 {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSchedulerGroupsByDomainAndBoundsConcurrency(t *testing.T) {
	st := &memStore{msgs: map[string]*queue.Message{}}
	for _, id := range []string{"m1", "m2", "m3", "m4", "m5"} {
		st.add(id, false, "a@one.test", "b@two.test", "c@ONE.test")
	}
	st.add("held", true, "h@one.test")
	d := &gateDeliverer{inFlight: map[string]int{}, release: make(chan struct{}), fail: map[string]bool{}}
	runScheduler(t, st, d, 2)

	// Let deliveries through one at a time and watch the concurrency.
	delivered := func() bool {
		for _, id := range []string{"m1", "m2", "m3", "m4", "m5"} {
			m, _ := st.Get(id)
			if !nextAttempt(m).IsZero() {
				return false
			}
		}
		return true
	}
	for i := 0; !delivered(); i++ {
		if i == 2000 {
			t.Fatal("messages never delivered")
		}
		select {
		case d.release <- struct{}{}:
		case <-time.After(10 * time.Millisecond):
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.maxAll > 2 {
		t.Errorf("%d deliveries in flight, limit 2", d.maxAll)
	}
	if len(d.calls) != 10 {
		t.Errorf("%d delivery groups, want 10 (5 messages × 2 domains)", len(d.calls))
	}
	for _, c := range d.calls {
		if c.ID == "held" {
			t.Error("a held message was delivered")
		}
		if c.Domain == "one.test" && len(c.Recipients) != 2 {
			t.Errorf("one.test group %v: recipients of one domain must share a transaction", c.Recipients)
		}
	}
}

func TestSchedulerRetriesDeferredAndWakes(t *testing.T) {
	st := &memStore{msgs: map[string]*queue.Message{}, deferFor: 50 * time.Millisecond}
	st.add("m1", false, "a@one.test")
	d := &gateDeliverer{inFlight: map[string]int{}, fail: map[string]bool{"a@one.test": true}}
	s := runScheduler(t, st, d, 4)

	attempts := func() int {
		m, _ := st.Get("m1")
		return m.Recipients[0].Attempts
	}
	waitFor(t, "three deferred attempts", func() bool { return attempts() >= 3 })
	d.mu.Lock()
	d.fail["a@one.test"] = false
	d.mu.Unlock()
	waitFor(t, "delivery", func() bool {
		m, _ := st.Get("m1")
		return m.Recipients[0].State == queue.StateDelivered
	})

	// A message added later is picked up on Wake, not on a poll.
	st.add("m2", false, "b@two.test")
	s.Wake("m2")
	waitFor(t, "woken message delivered", func() bool {
		m, _ := st.Get("m2")
		return m.Recipients[0].State == queue.StateDelivered
	})
}

// TestSchedulerBoundsBodyBytesInFlight: with room for one 800-octet body
// at a time, deliveries of such messages never overlap, however many
// slots are free.
func TestSchedulerBoundsBodyBytesInFlight(t *testing.T) {
	st := &memStore{msgs: map[string]*queue.Message{}}
	for _, id := range []string{"m1", "m2", "m3", "m4"} {
		st.add(id, false, "a@"+id+".test")
		st.msgs[id].Size = 800
	}
	d := &gateDeliverer{inFlight: map[string]int{}, release: make(chan struct{}), fail: map[string]bool{}}
	s := New(Options{Store: st, Deliverer: d, MaxConcurrency: 4, MaxBytesInFlight: 1000})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	// All four attempts start (four slots); one holds its body, the
	// others wait for room before reading theirs.
	waitFor(t, "four attempts started", func() bool { return st.gets.Load() >= 4 })
	time.Sleep(100 * time.Millisecond) // let any attempt that could overlap reach the deliverer
	for delivered := 0; delivered < 4; {
		select {
		case d.release <- struct{}{}:
			delivered++
		case <-time.After(10 * time.Second):
			t.Fatal("deliveries stalled")
		}
	}
	waitFor(t, "all delivered", func() bool {
		for _, id := range []string{"m1", "m2", "m3", "m4"} {
			if m, _ := st.Get(id); !nextAttempt(m).IsZero() {
				return false
			}
		}
		return true
	})
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.maxAll != 1 {
		t.Errorf("%d deliveries overlapped; the byte budget allows 1", d.maxAll)
	}
}

// TestSchedulerStreamsLargeBodiesWithinTheBudget: a body in a file is
// streamed, so an attempt takes from the byte budget its buffers, not
// its size: four 50 MB messages go out at once under a 10 MB budget. A
// method that loads the body whole takes its size, and waits for room.
func TestSchedulerStreamsLargeBodiesWithinTheBudget(t *testing.T) {
	for _, tc := range []struct {
		name    string
		load    bool
		overlap int
	}{{"streamed", false, 4}, {"loaded whole", true, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			st := &memStore{msgs: map[string]*queue.Message{}, fileBodies: true}
			for _, id := range []string{"m1", "m2", "m3", "m4"} {
				st.add(id, false, "a@"+id+".test")
				st.msgs[id].Size = 50 << 20
			}
			methods := Builtin()
			if tc.load {
				methods["tls"] = MethodFunc(func(_ context.Context, _ *queue.Message, _ Group, body Body) Action {
					b, err := body.Bytes()
					if err != nil {
						return Action{Outcome: &queue.RcptOutcome{Status: "4.3.0", Message: err.Error()}}
					}
					return Action{Send: delivery.Bytes(b)}
				})
			}
			d := &gateDeliverer{inFlight: map[string]int{}, release: make(chan struct{}), fail: map[string]bool{}}
			s := New(Options{Store: st, Deliverer: d, Methods: methods, MaxConcurrency: 4, MaxBytesInFlight: 10 << 20})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { s.Run(ctx); close(done) }()
			t.Cleanup(func() { cancel(); <-done })
			waitFor(t, "four attempts started", func() bool { return st.gets.Load() >= 4 })
			if !tc.load {
				waitFor(t, "four deliveries at once", func() bool {
					d.mu.Lock()
					defer d.mu.Unlock()
					return d.cur == 4
				})
			} else {
				time.Sleep(100 * time.Millisecond) // let any attempt that could overlap reach the deliverer
			}
			for delivered := 0; delivered < 4; {
				select {
				case d.release <- struct{}{}:
					delivered++
				case <-time.After(10 * time.Second):
					t.Fatal("deliveries stalled")
				}
			}
			d.mu.Lock()
			defer d.mu.Unlock()
			if d.maxAll != tc.overlap {
				t.Errorf("%d deliveries overlapped, want %d", d.maxAll, tc.overlap)
			}
		})
	}
}

// settleOnCancel blocks until its context ends, then reports the first
// recipient accepted (the server's 250 arrived just before the shutdown)
// and the others cut short.
type settleOnCancel struct{ started chan struct{} }

func (d settleOnCancel) Deliver(ctx context.Context, req delivery.Request) (queue.Attempt, []queue.RcptOutcome) {
	close(d.started)
	<-ctx.Done()
	out := []queue.RcptOutcome{{Address: req.Recipients[0], Delivered: true, Status: "2.0.0"}}
	for _, r := range req.Recipients[1:] {
		out = append(out, queue.RcptOutcome{Address: r, Status: "4.4.5", Message: "delivery cancelled"})
	}
	return queue.Attempt{Destination: req.Domain, Recipients: req.Recipients}, out
}

// TestSchedulerShutdownKeepsSettledOutcomes: an attempt cut short by a
// shutdown leaves the recipients it did not settle as they were (no
// attempt counted), but records what the destination did settle, so a
// message it accepted is not sent again after the restart.
func TestSchedulerShutdownKeepsSettledOutcomes(t *testing.T) {
	st := &memStore{msgs: map[string]*queue.Message{}}
	st.add("m1", false, "a@one.test", "b@one.test")
	d := settleOnCancel{started: make(chan struct{})}
	s := New(Options{Store: st, Deliverer: d, MaxConcurrency: 1})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	<-d.started
	cancel()
	<-done
	m, _ := st.Get("m1")
	if r := m.Recipients[0]; r.State != queue.StateDelivered {
		t.Errorf("accepted recipient: %+v", r)
	}
	if r := m.Recipients[1]; r.State != queue.StateQueued || r.Attempts != 0 {
		t.Errorf("cut-short recipient must stay as it was: %+v", r)
	}
}

// TestSchedulerRetriesLoadingThePendingList: a spool that cannot list
// its pending messages at start does not stop delivery for good: the
// scheduler says it has not loaded the queue (the node is not ready),
// retries, and then delivers both the spooled messages and those woken
// meanwhile.
func TestSchedulerRetriesLoadingThePendingList(t *testing.T) {
	st := &memStore{msgs: map[string]*queue.Message{}, pendingFails: 3}
	st.add("m1", false, "a@one.test")
	d := &gateDeliverer{inFlight: map[string]int{}, fail: map[string]bool{}}
	s := New(Options{Store: st, Deliverer: d, MaxConcurrency: 2, LoadRetry: 20 * time.Millisecond})
	if s.Loaded() {
		t.Error("loaded before Run")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	st.add("m2", false, "b@two.test")
	s.Wake("m2") // intake goes on while the list cannot be read
	waitFor(t, "the pending list to load", s.Loaded)
	for _, id := range []string{"m1", "m2"} {
		waitFor(t, id+" delivered", func() bool {
			m, _ := st.Get(id)
			return m.Recipients[0].State == queue.StateDelivered
		})
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.pendingFails != 0 {
		t.Errorf("%d failures left: the scheduler did not retry", st.pendingFails)
	}
}

// TestSchedulerSleepsWhenFull: with every slot taken and more messages
// due, the loop waits for an attempt to report back instead of turning
// on a due time it cannot act on (it used to spin at 100 % CPU).
func TestSchedulerSleepsWhenFull(t *testing.T) {
	st := &memStore{msgs: map[string]*queue.Message{}}
	for i := range 20 {
		st.add(fmt.Sprintf("m%02d", i), false, fmt.Sprintf("a@d%02d.test", i))
	}
	d := &gateDeliverer{inFlight: map[string]int{}, release: make(chan struct{}), fail: map[string]bool{}}
	s := runScheduler(t, st, d, 2)
	waitFor(t, "two deliveries in flight", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.cur == 2
	})
	before := s.loops.Load()
	time.Sleep(200 * time.Millisecond) // a spinning loop turns millions of times here
	if n := s.loops.Load() - before; n > 20 {
		t.Errorf("the scheduler loop turned %d times while full and idle", n)
	}
	for range 20 {
		d.release <- struct{}{}
	}
}
