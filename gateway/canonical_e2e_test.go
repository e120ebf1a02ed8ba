package gateway_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testutil"
	"github.com/sealgate/sealgate/queue"
)

// TestTrailingDotAndCaseGetTheDomainsTLSPolicy: "Bob@DEST.Test." is the
// same destination as "bob@dest.test": it gets the domain's configured
// TLS level and never leaves in plaintext.
func TestTrailingDotAndCaseGetTheDomainsTLSPolicy(t *testing.T) {
	e := newE2E(t, "outbound:\n  tls_policy:\n    domains: {Dest.Test.: verify}\n")
	sink := e.destination("dest.test", "127.0.0.2", testutil.SinkOptions{}) // no STARTTLS
	id := e.send("alice@org.test", []string{"Bob@DEST.Test."}, message("dot", "Confidential."))
	m := e.waitAttempts(id, "Bob@dest.test", 2)
	r := m.Recipients[0]
	if r.State == queue.StateDelivered || r.Status != "4.7.5" || !strings.Contains(r.LastError, "tls_policy verify") {
		t.Errorf("recipient %+v: want deferred under the domain's verify level", r)
	}
	if n := len(sink.Messages()); n != 0 {
		t.Errorf("%d messages delivered in plaintext", n)
	}
}

// TestTrailingDotKeepsTheTLSHistory: once dest.test has shown verified
// TLS, a message to "bob@Dest.Test." is held to it too: the stripping
// host gets nothing.
func TestTrailingDotKeepsTheTLSHistory(t *testing.T) {
	e := newE2E(t, "")
	genuine := e.destination("dest.test", "127.0.0.2", testutil.SinkOptions{TLS: true, CA: e.ca})
	id := e.send("alice@org.test", []string{"bob@dest.test"}, message("first", "over TLS"))
	e.waitState(id, "bob@dest.test", queue.StateDelivered)

	e.dns.AddMX("dest.test", "evil.dest.test", 1)
	e.dns.AddA("evil.dest.test", "127.0.0.6")
	evil := testutil.NewSMTPSink(t, testutil.SinkOptions{ListenAddr: fmt.Sprintf("127.0.0.6:%d", e.port), Hostname: "evil.dest.test"})
	id = e.send("alice@org.test", []string{"bob@Dest.Test."}, message("second", "still secret"))
	e.waitState(id, "bob@dest.test", queue.StateDelivered)
	if n := len(evil.Messages()); n != 0 {
		t.Fatalf("the stripping host got %d messages", n)
	}
	if n := len(genuine.Messages()); n != 2 {
		t.Errorf("genuine host got %d messages, want 2", n)
	}
}

// TestQuotedLocalPartReachesNextHopQuoted: a quoted local part that
// looks like an ESMTP parameter stays one address on the way out; the
// next hop sees neither the null sender nor an injected ENVID.
func TestQuotedLocalPartReachesNextHopQuoted(t *testing.T) {
	e := newE2E(t, "")
	sink := e.destination("dest.test", "127.0.0.2", testutil.SinkOptions{TLS: true, CA: e.ca})
	id := e.send(`"> ENVID=x"@org.test`, []string{"bob@dest.test"}, message("quoted", "hi"))
	e.waitState(id, "bob@dest.test", queue.StateDelivered)
	got := sink.Messages()[0].From
	if got == "" || !strings.Contains(got, "> ENVID=x") || !strings.HasSuffix(got, "@org.test") {
		t.Errorf("next hop got MAIL FROM %q, want the quoted sender intact", got)
	}
}
