package scheduler

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealgate/sealgate/gateway/delivery"
	"github.com/sealgate/sealgate/queue"
)

// TestMethodRegistry runs a message whose recipients are at different
// chain methods through the real spool: a registered handler's form is
// what leaves (signed once per distinct form), a handler's skip moves the
// recipient to its next method at once, and a method without a handler
// holds its recipient, saying so.
func TestMethodRegistry(t *testing.T) {
	dir := t.TempDir()
	st, err := queue.Open(queue.Options{Path: filepath.Join(dir, "s.db"), KeyFile: filepath.Join(dir, "k")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	env := queue.Envelope{From: "a@org.test",
		Recipients: []string{"k@key.test", "n@nokey.test", "s@smime.test", "p@plain.test", "q@plain2.test"},
		Decisions: []queue.RcptDecision{
			{Chain: []string{"pgp", "escrow"}}, {Chain: []string{"pgp", "tls"}}, {Chain: []string{"smime"}},
			{Chain: []string{"tls"}}, {Chain: []string{"tls"}},
		}}
	id, err := st.Enqueue(context.Background(), env, []byte("Subject: s\r\n\r\nsecret\r\n"))
	if err != nil {
		t.Fatal(err)
	}

	methods := Builtin()
	methods["pgp"] = MethodFunc(func(_ context.Context, _ *queue.Message, g Group, body Body) Action {
		if g.Domain == "nokey.test" {
			return Action{Outcome: &queue.RcptOutcome{Skip: true, Message: "no key for " + g.Rcpts[0]}}
		}
		b, err := body.Bytes()
		if err != nil {
			return Action{Outcome: &queue.RcptOutcome{Status: "4.3.0", Message: err.Error()}}
		}
		return Action{Send: delivery.Bytes(bytes.ToUpper(b))}
	})
	var signMu sync.Mutex
	signs := 0
	sign := func(_ string, body delivery.Body) delivery.Body {
		signMu.Lock()
		signs++
		signMu.Unlock()
		return delivery.Bytes("DKIM-Signature: x\r\n" + readBody(t, body))
	}
	d := &gateDeliverer{inFlight: map[string]int{}, fail: map[string]bool{}}
	s := New(Options{Store: st, Deliverer: d, Methods: methods, Sign: sign})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	state := func(addr string) queue.Recipient {
		m, err := st.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range m.Recipients {
			if r.Address == addr {
				return r
			}
		}
		t.Fatalf("no recipient %s", addr)
		return queue.Recipient{}
	}
	waitFor(t, "the skipped recipient delivered by its next method", func() bool {
		return state("n@nokey.test").State == queue.StateDelivered
	})
	waitFor(t, "the others settled", func() bool {
		return state("k@key.test").State == queue.StateDelivered && state("p@plain.test").State == queue.StateDelivered &&
			state("q@plain2.test").State == queue.StateDelivered && state("s@smime.test").Attempts > 0
	})

	d.mu.Lock()
	bodies := map[string]string{}
	for _, c := range d.calls {
		bodies[c.Domain] = readBody(t, c.Body)
	}
	d.mu.Unlock()
	if got := bodies["key.test"]; got != "DKIM-Signature: x\r\nSUBJECT: S\r\n\r\nSECRET\r\n" {
		t.Errorf("key.test got %q, want the handler's form, signed", got)
	}
	for _, dom := range []string{"nokey.test", "plain.test", "plain2.test"} {
		if got := bodies[dom]; got != "DKIM-Signature: x\r\nSubject: s\r\n\r\nsecret\r\n" {
			t.Errorf("%s got %q, want the spooled message, signed", dom, got)
		}
	}
	if _, ok := bodies["smime.test"]; ok {
		t.Error("a method without a handler delivered")
	}
	signMu.Lock()
	// The first attempt has two forms (the handler's, and the spooled
	// one shared by plain.test and plain2.test); the skipped recipient
	// goes out on a second attempt, signed again.
	if signs != 3 {
		t.Errorf("signed %d times, want 3 (once per distinct form and attempt)", signs)
	}
	signMu.Unlock()

	sm := state("s@smime.test")
	if sm.State.Final() || sm.Status != "4.7.0" || !strings.Contains(sm.LastError, "smime") || !strings.Contains(sm.LastError, "does not provide") {
		t.Errorf("smime recipient: %+v, want held 4.7.0 naming the method", sm)
	}
	m, _ := st.Get(id)
	skipped := false
	for _, e := range m.Events {
		if e.Kind == "skipped" && strings.Contains(e.Detail, "no key for n@nokey.test") {
			skipped = true
		}
	}
	if !skipped {
		t.Errorf("the skip and its reason are not in the history: %+v", m.Events)
	}
}

func TestObservationChanges(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	known := &queue.DomainInfo{Domain: "d.test", TLSSeen: true, Verified: true, TLSVersions: []string{"TLS1.3"},
		MTASTSMode: "enforce", LastSeen: now.Add(-time.Minute)}
	same := queue.TLSObservation{Domain: "d.test", Connected: true, TLSVersion: "TLS1.3", Verified: true, MTASTSMode: "enforce"}
	if observationChanges(known, same, now) {
		t.Error("a delivery that teaches nothing new is recorded")
	}
	for name, tc := range map[string]struct {
		info *queue.DomainInfo
		obs  queue.TLSObservation
	}{
		"first sighting": {nil, same},
		"stale last seen": {&queue.DomainInfo{TLSSeen: true, Verified: true, TLSVersions: []string{"TLS1.3"}, MTASTSMode: "enforce",
			LastSeen: now.Add(-observationRefresh)}, same},
		"new version":  {known, queue.TLSObservation{TLSVersion: "TLS1.2", Verified: true}},
		"first TLS":    {&queue.DomainInfo{LastSeen: now}, queue.TLSObservation{TLSVersion: "TLS1.3"}},
		"now verified": {&queue.DomainInfo{TLSSeen: true, TLSVersions: []string{"TLS1.3"}, LastSeen: now}, queue.TLSObservation{TLSVersion: "TLS1.3", Verified: true}},
		"mode change":  {known, queue.TLSObservation{MTASTSMode: "testing"}},
		"DANE seen":    {known, queue.TLSObservation{DANE: true}},
	} {
		if !observationChanges(tc.info, tc.obs, now) {
			t.Errorf("%s: not recorded", name)
		}
	}
}

// soloMethod makes a form naming its one recipient, as an escrow notice
// holds its recipient's own link, and counts what it was told.
type soloMethod struct {
	mu        sync.Mutex
	groups    [][]string
	delivered []string
}

func (m *soloMethod) PerRecipient() {}

func (m *soloMethod) Prepare(_ context.Context, _ *queue.Message, g Group, _ Body) Action {
	m.mu.Lock()
	m.groups = append(m.groups, g.Rcpts)
	m.mu.Unlock()
	return Action{Send: delivery.Bytes("Subject: link\r\n\r\nfor " + strings.Join(g.Rcpts, ",") + "\r\n"),
		Delivered: func(out []queue.RcptOutcome) {
			m.mu.Lock()
			defer m.mu.Unlock()
			for _, o := range out {
				if o.Delivered {
					m.delivered = append(m.delivered, o.Address)
				}
			}
		}}
}

// TestPerRecipientMethodAndMissingMethodSkipped: a method the node
// does not provide, with more chain after it, is skipped with the
// reason; a PerRecipient method gets (and sends to) one recipient at a
// time, and hears how its form fared.
func TestPerRecipientMethodAndMissingMethodSkipped(t *testing.T) {
	dir := t.TempDir()
	st, err := queue.Open(queue.Options{Path: filepath.Join(dir, "s.db"), KeyFile: filepath.Join(dir, "k")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	chain := []string{"smime", "solo"}
	env := queue.Envelope{From: "a@org.test", Recipients: []string{"b@x.test", "c@x.test"},
		Decisions: []queue.RcptDecision{{Chain: chain}, {Chain: chain}}}
	id, err := st.Enqueue(context.Background(), env, []byte("Subject: s\r\n\r\nsecret\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	solo := &soloMethod{}
	methods := Builtin()
	methods["solo"] = solo
	d := &gateDeliverer{inFlight: map[string]int{}, fail: map[string]bool{}}
	s := New(Options{Store: st, Deliverer: d, Methods: methods})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "both recipients delivered", func() bool {
		m, _ := st.Get(id)
		return m != nil && m.Recipients[0].State == queue.StateDelivered && m.Recipients[1].State == queue.StateDelivered
	})
	d.mu.Lock()
	for _, c := range d.calls {
		if body := readBody(t, c.Body); len(c.Recipients) != 1 || !strings.Contains(body, "for "+c.Recipients[0]+"\r\n") {
			t.Errorf("delivery to %v of %q: want one recipient and its own form", c.Recipients, body)
		}
	}
	if len(d.calls) != 2 {
		t.Errorf("%d deliveries, want one per recipient", len(d.calls))
	}
	d.mu.Unlock()
	solo.mu.Lock()
	if len(solo.groups) != 2 || len(solo.delivered) != 2 {
		t.Errorf("groups %v, told delivered %v", solo.groups, solo.delivered)
	}
	solo.mu.Unlock()
	m, _ := st.Get(id)
	n := 0
	for _, e := range m.Events {
		if e.Kind == "skipped" && strings.Contains(e.Detail, "method smime skipped: this gateway does not provide smime") {
			n++
		}
	}
	if n != 2 {
		t.Errorf("history does not say smime was skipped for both: %+v", m.Events)
	}
}

// readBody reads a delivered body whole.
func readBody(t *testing.T, b delivery.Body) string {
	t.Helper()
	r, err := b.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}
