package metrics

import (
	"io"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/queue"
)

type spool struct {
	counts queue.Counts
	oldest time.Time
}

func (s spool) Counts() (queue.Counts, error) { return s.counts, nil }
func (s spool) OldestUnfinished() (time.Time, bool, error) {
	return s.oldest, !s.oldest.IsZero(), nil
}

func TestQueueGaugesAndOutcomes(t *testing.T) {
	now := time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC)
	m := New(spool{counts: queue.Counts{Unfinished: 7, Quarantined: 1}, oldest: now.Add(-90 * time.Minute)})
	m.now = func() time.Time { return now }
	m.Accepted(queue.Envelope{Recipients: []string{"a@x.test", "b@x.test"},
		Decisions: []queue.RcptDecision{{Chain: []string{"pgp", "escrow"}, Rules: []string{"lab"}}, {Chain: []string{"tls"}}}})
	msg := &queue.Message{Received: now.Add(-2 * time.Second)}
	m.Attempt(msg, queue.Attempt{MXHost: "mx.x.test", TLSVersion: ""}, []queue.RcptOutcome{
		{Address: "a@x.test", Skip: true, Method: "pgp"}, {Address: "b@x.test", Delivered: true, Method: "tls"}})
	m.Attempt(msg, queue.Attempt{NoConnection: "DNS lookup failed"}, []queue.RcptOutcome{{Address: "a@x.test", Method: "escrow"}})
	m.EscrowOpened()

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		"sealgate_queue_messages 7", "sealgate_queue_oldest_message_age_seconds 5400", "sealgate_spool_quarantined_messages 1",
		`sealgate_policy_decisions_total{method="pgp",rule="lab"} 1`, `sealgate_policy_decisions_total{method="tls",rule="none"} 1`,
		`sealgate_recipient_outcomes_total{method="pgp",outcome="skipped"} 1`, `sealgate_recipient_outcomes_total{method="tls",outcome="delivered"} 1`,
		`sealgate_recipient_outcomes_total{method="escrow",outcome="deferred"} 1`,
		`sealgate_delivery_sessions_total{tls_version="none",verified="false"} 1`, // the DNS failure reached no server
		`sealgate_deliveries_total{tls_version="none",verified="false"} 1`,        // b@ delivered in clear; a@'s skip is no delivery
		"sealgate_delivery_latency_seconds_sum 2", "sealgate_escrow_opens_total 1",
	} {
		if !strings.Contains(string(body), want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestDashboardUsesOnlyOurMetrics: every sealgate_ series the Grafana
// dashboard queries is one the node exports.
func TestDashboardUsesOnlyOurMetrics(t *testing.T) {
	data, err := os.ReadFile("../../packaging/grafana/sealgate.json")
	if err != nil {
		t.Fatal(err)
	}
	m := New(spool{})
	m.Accepted(queue.Envelope{Recipients: []string{"a@x.test"}})
	m.Attempt(&queue.Message{}, queue.Attempt{MXHost: "mx"}, []queue.RcptOutcome{{Delivered: true}})
	m.EscrowOpened()
	m.WebhookFailed(false)
	m.SharedStoreUp(true) // a fleet's node
	m.Leading(false)
	families, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, f := range families {
		have[f.GetName()] = true
	}
	used := regexp.MustCompile(`sealgate_[a-z_]+`).FindAllString(string(data), -1)
	if len(used) < 10 {
		t.Fatalf("the dashboard queries %d series", len(used))
	}
	for _, name := range used {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_count"), "_sum")
		if !have[base] {
			t.Errorf("the dashboard queries %s, which the node does not export", name)
		}
	}
}

// Recipients that bounce outside their attempt's outcome are counted as
// bounced too: a deferral past the message's expiry, and an admin's
// queue delete --bounce. Measured on a real spool's records.
func TestExpiredAndAdminBouncesCount(t *testing.T) {
	dir := t.TempDir()
	clock := time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC)
	s, err := queue.Open(queue.Options{Path: dir + "/spool.db", KeyFile: dir + "/spool.key", Expiry: time.Hour,
		Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	id, err := s.Enqueue(t.Context(), queue.Envelope{From: "a@o.test", Recipients: []string{"late@x.test", "other@y.test"},
		Decisions: []queue.RcptDecision{{Chain: []string{"tls"}}, {Chain: []string{"tls-verified"}}}}, []byte("Subject: s\r\n\r\nb\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	m := New(spool{})
	clock = clock.Add(2 * time.Hour) // past the expiry: this deferral bounces (4.4.7)
	defer1 := []queue.RcptOutcome{{Address: "late@x.test", Code: 451, Method: "tls"}}
	updated, _, err := s.RecordAttempt(id, queue.Attempt{Destination: "x.test"}, defer1, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.Attempt(updated, queue.Attempt{Destination: "x.test"}, defer1)

	id2, err := s.Enqueue(t.Context(), queue.Envelope{From: "a@o.test", Recipients: []string{"held@z.test"}}, []byte("Subject: s\r\n\r\nb\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Bounce(id2, "deleted by the mail administrator", nil); err != nil {
		t.Fatal(err)
	}
	bounced, err := s.Get(id2)
	if err != nil {
		t.Fatal(err)
	}
	m.AdminBounced(bounced)

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`sealgate_recipient_outcomes_total{method="tls",outcome="deferred"} 1`, // the attempt's own outcome
		`sealgate_recipient_outcomes_total{method="tls",outcome="bounced"} 2`,  // late@ expired, held@ by the admin
	} {
		if !strings.Contains(string(body), want+"\n") {
			t.Errorf("metrics lack %q:\n%s", want, grepLines(string(body), "recipient_outcomes"))
		}
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
