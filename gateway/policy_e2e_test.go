package gateway_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/gateway/admin"
	"github.com/sealgate/sealgate/internal/testutil"
	"github.com/sealgate/sealgate/policy"
	"github.com/sealgate/sealgate/queue"
)

// policyYAML is a realistic rule set for the end-to-end policy tests.
const policyYAML = `policy:
  escalation_chain: [tls-verified, bounce]
  forwarding: tls-only
  forwarding_fallback: drop
  rules:
    - name: no-ssn
      match: {subject: '\b\d{3}-\d{2}-\d{4}\b'}
      reject: "Social security numbers may not appear in a subject"
    - name: partner-forced-tls
      match: {to: [partner.test]}
      chain: [tls-verified, bounce]
    - name: lab-exclusive
      match: {to: [lab.test]}
      chain: [tls-verified, drop]
`

func TestSecureTagEscalatesAndIsStripped(t *testing.T) {
	e := newE2E(t, policyYAML)
	sink := e.destination("dest.test", "127.0.0.2", testutil.SinkOptions{TLS: true, CA: e.ca})
	subject := "=?utf-8?B?W3NlY3VyZV0g5qSc5p+757WQ5p6c?=" // "[secure] 検査結果"
	id := e.send("alice@org.test", []string{"bob@dest.test"}, message(subject, "Results attached."))
	m := e.waitState(id, "bob@dest.test", queue.StateDelivered)
	if r := m.Recipients[0]; strings.Join(r.Chain, ",") != "tls-verified,bounce" {
		t.Errorf("chain %v, want the escalation chain", r.Chain)
	}
	got := sink.WaitMessages(t, 1, 20*time.Second)[0]
	if !bytes.Contains(got.Data, []byte("Subject: =?utf-8?b?5qSc5p+757WQ5p6c?=\r\n")) {
		t.Errorf("delivered subject still tagged or mangled:\n%s", got.Data)
	}
	if att := lastAttempt(m); att.TLSLevel != "verify" || !strings.Contains(att.TLSRequiredBy, "policy chain tls-verified") {
		t.Errorf("attempt %+v", att)
	}
}

func TestDefaultEscalationHoldsUntilEncryptionExists(t *testing.T) {
	e := newE2E(t, "")
	sink := e.destination("dest.test", "127.0.0.2", testutil.SinkOptions{TLS: true, CA: e.ca})
	id := e.send("alice@org.test", []string{"bob@dest.test"}, message("[encrypt] results", "x"))
	m := e.waitState(id, "bob@dest.test", queue.StateDeferred)
	// No OpenPGP key and no S/MIME certificate: pgp and smime are
	// skipped with their reasons; escrow without a portal is not
	// provided and, at the end of the chain, holds.
	if r := m.Recipients[0]; r.Method() != "escrow" || !strings.Contains(r.LastError, "needs escrow") {
		t.Errorf("recipient %+v", r)
	}
	if !hasEvent(m, "skipped", "bob@dest.test: method pgp skipped: no OpenPGP key for bob@dest.test") {
		t.Errorf("history does not say why pgp was skipped: %+v", m.Events)
	}
	if !hasEvent(m, "skipped", "bob@dest.test: method smime skipped: no S/MIME certificate for bob@dest.test") {
		t.Errorf("history does not say why smime was skipped: %+v", m.Events)
	}
	if len(sink.Messages()) != 0 {
		t.Error("an escalated message went out by plain TLS")
	}
}

func hasEvent(m *queue.Message, kind, detail string) bool {
	for _, ev := range m.Events {
		if ev.Kind == kind && strings.Contains(ev.Detail, detail) {
			return true
		}
	}
	return false
}

func TestForcedTLSBouncesAndExclusiveDrops(t *testing.T) {
	e := newE2E(t, policyYAML)
	partner := e.destination("partner.test", "127.0.0.2", testutil.SinkOptions{}) // no STARTTLS
	lab := e.destination("lab.test", "127.0.0.4", testutil.SinkOptions{})         // no STARTTLS
	ok := e.destination("dest.test", "127.0.0.5", testutil.SinkOptions{})
	senderBox := e.destination("org.test", "127.0.0.3", testutil.SinkOptions{})

	// One message, three recipients with three chains: split delivery.
	id := e.send("alice@org.test", []string{"bob@partner.test", "carol@lab.test", "dave@dest.test"}, message("report", "x"))
	m := e.waitState(id, "bob@partner.test", queue.StateBounced)
	m = e.waitState(id, "carol@lab.test", queue.StateDropped)
	m = e.waitState(id, "dave@dest.test", queue.StateDelivered)
	if len(partner.Messages())+len(lab.Messages()) != 0 {
		t.Fatal("a TLS-only recipient got the message in plaintext")
	}
	if len(ok.Messages()) != 1 {
		t.Error("the unrestricted recipient did not get it")
	}
	kinds := ""
	for _, ev := range m.Events {
		kinds += ev.Kind + ":" + ev.Detail + "\n"
	}
	for _, want := range []string{"skipped:bob@partner.test: method tls-verified skipped", "dropped:carol@lab.test"} {
		if !strings.Contains(kinds, want) {
			t.Errorf("history lacks %q:\n%s", want, kinds)
		}
	}
	dsn := senderBox.WaitMessages(t, 1, 20*time.Second)[0]
	for _, want := range []string{"Final-Recipient: rfc822; bob@partner.test", "Status: 5.7.10", "TLS with a verified certificate was required"} {
		if !bytes.Contains(dsn.Data, []byte(want)) {
			t.Errorf("DSN lacks %q:\n%s", want, dsn.Data)
		}
	}
	if bytes.Contains(dsn.Data, []byte("carol@lab.test")) {
		t.Error("a dropped recipient appears in the DSN")
	}
}

func TestForwardedMailNeverInPlaintext(t *testing.T) {
	e := newE2E(t, policyYAML)
	plain := e.destination("dest.test", "127.0.0.2", testutil.SinkOptions{})
	msg := "From: alice@org.test\r\nTo: bob@dest.test\r\nSubject: [secure] fwd\r\n" +
		"X-MS-Exchange-Organization-AutoForwarded: true\r\n\r\nforwarded body\r\n"
	id := e.send("alice@org.test", []string{"bob@dest.test"}, msg)
	m := e.waitState(id, "bob@dest.test", queue.StateDropped)
	if r := m.Recipients[0]; strings.Join(r.Chain, ",") != "tls-verified,drop" {
		t.Errorf("forwarded chain %v: never escalated, TLS or nothing", r.Chain)
	}
	if len(plain.Messages()) != 0 {
		t.Error("forwarded mail went out in plaintext")
	}
}

func TestRuleRejectsAtSMTPTime(t *testing.T) {
	e := newE2E(t, policyYAML)
	_, err := e.trySend("alice@org.test", []string{"bob@dest.test"}, message("SSN 123-45-6789", "x"))
	if err == nil || !strings.Contains(err.Error(), "550") || !strings.Contains(err.Error(), "Social security numbers may not appear") {
		t.Fatalf("send: %v, want 550 5.7.1 with the rule's text", err)
	}
	if msgs, _ := e.gw.Store().List(); len(msgs) != 0 {
		t.Error("a rejected message was spooled")
	}
}

// TestExplainMatchesLiveGateway: explain's per-recipient decision is what
// the live gateway stored for the same message.
func TestExplainMatchesLiveGateway(t *testing.T) {
	e := newE2E(t, policyYAML)
	e.dns.SetServfail("partner.test") // keep everything queued
	e.dns.SetServfail("dest.test")
	msg := message("[secure] quarterly", "x")
	rcpts := []string{"bob@partner.test", "dave@dest.test"}
	id := e.send("alice@org.test", rcpts, msg)
	live, _ := e.gw.Store().Get(id)

	cfg := e.gw.Config()
	res, _, err := policy.Explain(cfg, policy.ExplainInput{From: "alice@org.test", Recipients: rcpts,
		ClientIP: netip.MustParseAddr("127.0.0.1")}, []byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	for i, rd := range res.Recipients {
		got := fmt.Sprint(live.Recipients[i].Chain, live.Recipients[i].Rules)
		want := fmt.Sprint(rd.Chain.Strings(), rd.Rules)
		if got != want {
			t.Errorf("%s: live %s, explain %s", rd.Recipient, got, want)
		}
	}
	if res.Subject != "quarterly" {
		t.Errorf("explain subject %q", res.Subject)
	}
}

func TestPolicyReloadThroughAdminAPI(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "sealgate.yaml")
	e := newE2E(t, policyYAML)
	// The gateway was built from a config that has no file on disk.
	tok, err := admin.ReadToken(e.gw.Config().AdminTokenFile())
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+e.gw.AdminAddr()+"/api/v1/policy/reload", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("reload without a readable config file: %s", resp.Status)
	}
	// The running rules still apply.
	if _, err := e.trySend("a@org.test", []string{"b@dest.test"}, message("SSN 123-45-6789", "x")); err == nil || !strings.Contains(err.Error(), "550") {
		t.Errorf("after a refused reload the old rules must stay: %v", err)
	}

	// A valid new rule set takes effect.
	os.WriteFile(cfgFile, []byte("policy:\n  rules:\n    - name: block-all-lab\n      match: {to: [lab.test]}\n      reject: closed\n"), 0o600)
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.gw.ReloadPolicy(cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := e.trySend("a@org.test", []string{"b@lab.test"}, message("hello", "x")); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("new rule not in force: %v", err)
	}
	if _, err := e.trySend("a@org.test", []string{"b@dest.test"}, message("SSN 123-45-6789", "x")); err != nil {
		t.Errorf("old rule still in force after reload: %v", err)
	}
}

// TestReapplyMovesHeldMailOntoTheNewChain: a [encrypt] message waits at
// escrow, which this node does not provide; the admin changes the
// escalation chain, reloads, and re-applies the policy through the admin
// API: the message leaves by verified TLS, still counted as tagged.
func TestReapplyMovesHeldMailOntoTheNewChain(t *testing.T) {
	e := newE2E(t, "")
	sink := e.destination("dest.test", "127.0.0.2", testutil.SinkOptions{TLS: true, CA: e.ca})
	id := e.send("alice@org.test", []string{"bob@dest.test"}, message("[encrypt] results", "Results attached."))
	m := e.waitState(id, "bob@dest.test", queue.StateDeferred)
	if r := m.Recipients[0]; r.Method() != "escrow" {
		t.Fatalf("recipient %+v, want waiting at escrow", r)
	}
	// The tag left the Subject at intake; the record keeps it.
	if a := m.Envelope.Asked; a == nil || strings.Join(a.Tags, " ") != "[encrypt]" {
		t.Fatalf("what the message asked for is not on record: %+v", a)
	}

	cfgFile := filepath.Join(t.TempDir(), "sealgate.yaml")
	os.WriteFile(cfgFile, []byte("policy:\n  escalation_chain: [tls-verified, bounce]\n"), 0o600)
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.gw.ReloadPolicy(cfg); err != nil {
		t.Fatal(err)
	}
	tok, err := admin.ReadToken(e.gw.Config().AdminTokenFile())
	if err != nil {
		t.Fatal(err)
	}
	c := admin.NewAdminClient(e.gw.AdminAddr(), tok)
	res, err := c.Reapply(id[:len(id)-2])
	if err != nil {
		t.Fatal(err)
	}
	if res.ID != id || !strings.Contains(res.Detail, "bob@dest.test: [tls-verified, bounce] by tag [encrypt] (was [pgp, smime, escrow] at escrow)") {
		t.Errorf("reapply result %+v", res)
	}
	m = e.waitState(id, "bob@dest.test", queue.StateDelivered)
	if att := lastAttempt(m); att.TLSLevel != "verify" || !att.CertVerified {
		t.Errorf("delivered by %+v, want verified TLS", att)
	}
	got := sink.WaitMessages(t, 1, 20*time.Second)[0]
	if !bytes.Contains(got.Data, []byte("Subject: results\r\n")) {
		t.Errorf("delivered message:\n%s", got.Data)
	}

	// Finished now: nothing to decide again.
	if _, err := c.Reapply(id); !errors.Is(err, queue.ErrFinished) {
		t.Errorf("reapply of a delivered message: %v", err)
	}
}

// TestDeleteBounceAndDelayNotice: a deferred message's sender hears once
// that it is delayed (queue.delay_warning), and again, with a failure,
// when the admin deletes it with --bounce.
func TestDeleteBounceAndDelayNotice(t *testing.T) {
	e := newE2E(t, "queue: {delay_warning: 300ms}\n")
	senderBox := e.destination("org.test", "127.0.0.3", testutil.SinkOptions{})
	e.dns.SetServfail("broken.test")
	id := e.send("alice@org.test", []string{"a@broken.test"}, message("slow", "secret body text"))

	notice := senderBox.WaitMessages(t, 1, 20*time.Second)[0]
	for _, want := range []string{"Subject: Delayed Mail (still being retried)", "Action: delayed", "Final-Recipient: rfc822; a@broken.test", "Will-Retry-Until: ", "Status: 4."} {
		if !bytes.Contains(notice.Data, []byte(want)) {
			t.Errorf("delay notice lacks %q:\n%s", want, notice.Data)
		}
	}
	if bytes.Contains(notice.Data, []byte("secret body text")) {
		t.Error("the delay notice echoes the body")
	}
	e.waitAttempts(id, "a@broken.test", 4) // more deferrals, no more notices

	tok, err := admin.ReadToken(e.gw.Config().AdminTokenFile())
	if err != nil {
		t.Fatal(err)
	}
	res, err := admin.NewAdminClient(e.gw.AdminAddr(), tok).Bounce(id)
	if err != nil || res.DSNID == "" {
		t.Fatalf("Bounce = %+v, %v", res, err)
	}
	msgs := senderBox.WaitMessages(t, 2, 20*time.Second)
	if len(msgs) != 2 {
		t.Fatalf("the sender got %d reports, want the delay notice and the bounce", len(msgs))
	}
	dsn := msgs[1]
	for _, want := range []string{"Action: failed", "Status: 5.0.0", "deleted by the mail administrator"} {
		if !bytes.Contains(dsn.Data, []byte(want)) {
			t.Errorf("bounce lacks %q:\n%s", want, dsn.Data)
		}
	}
	if m := e.waitState(id, "a@broken.test", queue.StateBounced); !hasEvent(m, "deleted", "deleted by the mail administrator") {
		t.Errorf("history: %+v", m.Events)
	}
}
