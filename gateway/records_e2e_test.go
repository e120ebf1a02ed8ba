package gateway_test

// Records tell the truth (issue 13 part 2): what the spool keeps of an
// attempt is what happened, in the destination's own words.

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/internal/testutil"
	"github.com/sealgate/sealgate/queue"
)

// TestRecordedReplyIsTheDestinations: the reply recorded for the attempt
// and for each recipient is the one the destination gave to the final
// dot, queue ID and all — not a reply of our own making.
func TestRecordedReplyIsTheDestinations(t *testing.T) {
	e := newE2E(t, "")
	sink := e.destination("dest.test", "127.0.0.2", testutil.SinkOptions{TLS: true})
	id := e.send("alice@org.test", []string{"bob@dest.test", "carol@dest.test"}, message("reply", "Body."))

	got := sink.WaitMessages(t, 1, 20*time.Second)[0]
	m := e.waitState(id, "carol@dest.test", queue.StateDelivered)
	m = e.waitState(id, "bob@dest.test", queue.StateDelivered)
	if !strings.Contains(got.Reply, "queued as "+got.QueueID) || got.QueueID == "" {
		t.Fatalf("the sink's reply %q does not name its queue ID %q", got.Reply, got.QueueID)
	}
	a := lastAttempt(m)
	if a == nil || a.Reply != got.Reply {
		t.Errorf("attempt reply %+v, want the destination's %q", a, got.Reply)
	}
	for _, r := range m.Recipients {
		if r.LastError != got.Reply || r.LastCode != 250 || r.Status != "2.0.0" {
			t.Errorf("%s: recorded %d %s %q, want the destination's %q", r.Address, r.LastCode, r.Status, r.LastError, got.Reply)
		}
	}
}

// TestAttemptWithoutConnectionHasNoTLSFacts: an attempt that reached no
// mail server — a DNS failure, a TLS requirement refused before any
// connection, a chain that holds — says why, and records neither TLS
// nor plaintext.
func TestAttemptWithoutConnectionHasNoTLSFacts(t *testing.T) {
	e := newE2E(t, "outbound:\n  tls_policy:\n    domains: {strict.test: dane-only}\n")
	e.dns.SetServfail("broken.test")
	e.destination("strict.test", "127.0.0.2", testutil.SinkOptions{TLS: true}) // no TLSA records
	e.destination("dest.test", "127.0.0.3", testutil.SinkOptions{TLS: true})

	for _, c := range []struct {
		rcpt, subject, why string
	}{
		{"a@broken.test", "dns", "DNS lookup failed"},
		{"b@strict.test", "dane", "TLS requirement not met"},
		{"c@dest.test", "[encrypt] held", "held by policy (method escrow)"},
	} {
		id := e.send("alice@org.test", []string{c.rcpt}, message(c.subject, "x"))
		m := e.waitState(id, c.rcpt, queue.StateDeferred)
		if c.rcpt == "c@dest.test" {
			m = e.waitAttempts(id, c.rcpt, 1)
		}
		a := lastAttempt(m)
		if a == nil {
			t.Fatalf("%s: no attempt recorded: %+v", c.rcpt, m.Events)
		}
		if a.Connected() || a.NoConnection != c.why {
			t.Errorf("%s: no_connection %q (connected %v), want %q", c.rcpt, a.NoConnection, a.Connected(), c.why)
		}
		if a.TLSVersion != "" || a.Cipher != "" || a.CertVerified || a.MXHost != "" || a.IP != "" {
			t.Errorf("%s: TLS facts on an attempt without a connection: %+v", c.rcpt, a)
		}
		js, _ := json.Marshal(a)
		if strings.Contains(string(js), "cert_verified") {
			t.Errorf("%s: JSON speaks of a certificate: %s", c.rcpt, js)
		}
	}
}

// TestChainByTagIsRecordedAsSuch: a chain a Subject tag chose is spooled
// as chosen "by tag [secure]", for the decision and the recipient.
func TestChainByTagIsRecordedAsSuch(t *testing.T) {
	e := newE2E(t, policyYAML)
	e.dns.SetServfail("dest.test") // keep it queued
	id := e.send("alice@org.test", []string{"bob@dest.test"}, message("[secure] results", "x"))
	m, err := e.gw.Store().Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if d := m.Envelope.Decisions; len(d) != 1 || d[0].By != "tag [secure]" {
		t.Errorf("spooled decisions %+v, want one chosen by tag [secure]", d)
	}
	if r := m.Recipients[0]; r.By != "tag [secure]" || strings.Join(r.Chain, ",") != "tls-verified,bounce" {
		t.Errorf("recipient %+v, want the escalation chain by tag [secure]", r)
	}
}

// TestRecordedRefusalIsTheDestinations: a refusal is recorded as the
// destination wrote it, enhanced status code included.
func TestRecordedRefusalIsTheDestinations(t *testing.T) {
	e := newE2E(t, "")
	e.destination("dest.test", "127.0.0.2", testutil.SinkOptions{TLS: true, RcptReply: func(string) *smtp.SMTPError {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<gone@dest.test>: Recipient address rejected: User unknown"}
	}})
	id := e.send("alice@org.test", []string{"gone@dest.test"}, message("refused", "x"))
	m := e.waitState(id, "gone@dest.test", queue.StateBounced)
	const want = "550 5.1.1 <gone@dest.test>: Recipient address rejected: User unknown"
	if r := m.Recipients[0]; r.LastError != want || r.Status != "5.1.1" {
		t.Errorf("recorded %s %q, want the destination's %q", r.Status, r.LastError, want)
	}
	if a := lastAttempt(m); a == nil || a.Reply != want {
		t.Errorf("attempt %+v, want reply %q", a, want)
	}
}
