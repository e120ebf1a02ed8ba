package scheduler

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/sealgate/sealgate/gateway/delivery"
	"github.com/sealgate/sealgate/queue"
)

// stuckDestination never answers for one domain until released, and
// delivers every other at once.
type stuckDestination struct {
	domain  string
	release chan struct{}
	mu      sync.Mutex
	cur     map[string]int
	peak    map[string]int
}

func (d *stuckDestination) Deliver(ctx context.Context, req delivery.Request) (queue.Attempt, []queue.RcptOutcome) {
	d.mu.Lock()
	d.cur[req.Domain]++
	d.peak[req.Domain] = max(d.peak[req.Domain], d.cur[req.Domain])
	d.mu.Unlock()
	if req.Domain == d.domain {
		select {
		case <-d.release:
		case <-ctx.Done():
		}
	}
	d.mu.Lock()
	d.cur[req.Domain]--
	d.mu.Unlock()
	var out []queue.RcptOutcome
	for _, r := range req.Recipients {
		out = append(out, queue.RcptOutcome{Address: r, Delivered: true})
	}
	return queue.Attempt{Destination: req.Domain, Recipients: req.Recipients}, out
}

// TestSlowDestinationCannotTakeEverySlot: with more messages due for one
// stuck destination than there are global slots, mail to another
// destination still goes out at once; the stuck one never has more than
// max_per_destination deliveries in flight, and its waiting messages all
// go out once it answers again.
func TestSlowDestinationCannotTakeEverySlot(t *testing.T) {
	st := &memStore{msgs: map[string]*queue.Message{}}
	for i := range 8 {
		st.add(fmt.Sprintf("slow%d", i), false, "a@slow.test")
	}
	d := &stuckDestination{domain: "slow.test", release: make(chan struct{}), cur: map[string]int{}, peak: map[string]int{}}
	s := New(Options{Store: st, Deliverer: d, MaxConcurrency: 4, MaxPerDestination: 2})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	waitFor(t, "the stuck destination to fill its slots", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.cur["slow.test"] >= 2
	})

	st.add("fast", false, "b@fast.test")
	s.Wake("fast")
	waitFor(t, "mail to another destination", func() bool {
		m, _ := st.Get("fast")
		return m.Recipients[0].State == queue.StateDelivered
	})

	close(d.release)
	for i := range 8 {
		id := fmt.Sprintf("slow%d", i)
		waitFor(t, id+" delivered", func() bool {
			m, _ := st.Get(id)
			return m.Recipients[0].State == queue.StateDelivered
		})
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.peak["slow.test"] > 2 {
		t.Errorf("%d deliveries to one destination at once, max_per_destination 2", d.peak["slow.test"])
	}
}

// TestDestSlotsPassOnUnusedSlots: a slot handed to a message that does
// not use it (deleted or delivered meanwhile) goes to the next in line
// instead of being lost.
func TestDestSlotsPassOnUnusedSlots(t *testing.T) {
	d := newDestSlots(1)
	if !d.take("x.test", "A") || d.take("x.test", "B") || d.take("x.test", "C") || d.take("x.test", "B") {
		t.Fatal("limit 1: A takes the slot, B and C wait")
	}
	if w := d.release("x.test"); w != "B" {
		t.Fatalf("slot handed to %q, want B (first in line)", w)
	}
	if d.take("x.test", "D") {
		t.Error("a newcomer took the slot handed to B")
	}
	if w := d.drop("B"); len(w) != 1 || w[0] != "C" {
		t.Fatalf("B's unused slot went to %v, want C", w)
	}
	if !d.take("x.test", "C") {
		t.Error("C could not use the slot handed to it")
	}
	if d.release("x.test") != "D" || d.drop("D") != nil {
		t.Error("D was next in line")
	}
	if len(d.busy) != 0 || len(d.waiting) != 0 || len(d.handed) != 0 || len(d.inLine) != 0 {
		t.Errorf("state left over: %+v", d)
	}
}
