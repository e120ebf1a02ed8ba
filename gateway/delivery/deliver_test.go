package delivery

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/internal/dnsres"
	"github.com/sealgate/sealgate/internal/testutil"
	"github.com/sealgate/sealgate/policy"
	"github.com/sealgate/sealgate/queue"
)

// deliveryFixture is a Deliverer whose destinations are sinks on
// 127.0.0.x at one port.
type deliveryFixture struct {
	t    *testing.T
	dns  *testutil.DNSServer
	ca   *testutil.CA
	port int
	d    *Deliverer
}

func newDeliveryFixture(t *testing.T, sh *Smarthost) *deliveryFixture {
	f := &deliveryFixture{t: t, dns: testutil.NewDNSServer(t), ca: testutil.NewCA(t), port: testutil.FreePort(t)}
	r, err := dnsres.New(f.dns.Addr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	f.d = New(Options{
		Hostname: "gw.test", Resolver: r, Port: f.port, RootCAs: f.ca.Pool(),
		ConnectTimeout: 2 * time.Second, CommandTimeout: 5 * time.Second, IdleConnTimeout: 5 * time.Second,
		MaxPerDestination: 2, Smarthost: sh,
		AllowedPrivateNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, // the sinks
	})
	t.Cleanup(f.d.Close)
	return f
}

func (f *deliveryFixture) mx(domain, host, ip string, pref uint16, opts testutil.SinkOptions) *testutil.SMTPSink {
	return testutil.NewMX(f.t, f.dns, domain, host, ip, pref, f.port, opts)
}

func (f *deliveryFixture) deliver(domain string, rcpts ...string) (queue.Attempt, []queue.RcptOutcome) {
	return f.d.Deliver(context.Background(), Request{
		ID: "T1", From: "alice@org.test", Domain: domain, Recipients: rcpts,
		Body: Bytes("Subject: t\r\n\r\nhello\r\n"),
	})
}

func TestDeliverTLSVerifiedAndUnverified(t *testing.T) {
	f := newDeliveryFixture(t, nil)
	good := f.mx("good.test", "mx.good.test", "127.0.0.2", 10, testutil.SinkOptions{TLS: true, CA: f.ca})
	f.mx("selfsigned.test", "mx.selfsigned.test", "127.0.0.3", 10, testutil.SinkOptions{TLS: true}) // unknown CA
	plain := f.mx("plain.test", "mx.plain.test", "127.0.0.4", 10, testutil.SinkOptions{})

	att, out := f.deliver("good.test", "bob@good.test")
	if !out[0].Delivered || att.TLSVersion != "TLS1.3" || !att.CertVerified || att.Cipher == "" || att.MXHost != "mx.good.test" || att.IP != "127.0.0.2" {
		t.Errorf("verified TLS: %+v %+v", att, out)
	}
	if m := good.Messages()[0]; string(m.Data) != "Subject: t\r\n\r\nhello\r\n" || m.TLS == "" || m.Helo != "gw.test" {
		t.Errorf("received %+v", m)
	}

	att, out = f.deliver("selfsigned.test", "bob@selfsigned.test")
	if !out[0].Delivered || att.TLSVersion == "" || att.CertVerified || att.CertError == "" {
		t.Errorf("unverified TLS must still encrypt and deliver, recording the failure: %+v", att)
	}

	att, out = f.deliver("plain.test", "bob@plain.test")
	if !out[0].Delivered || att.TLSVersion != "" || len(plain.Messages()) != 1 {
		t.Errorf("plaintext: %+v", att)
	}
}

func TestDeliverPerRecipientReplies(t *testing.T) {
	f := newDeliveryFixture(t, nil)
	sink := f.mx("d.test", "mx.d.test", "127.0.0.2", 10, testutil.SinkOptions{
		RcptReply: func(rcpt string) *smtp.SMTPError {
			switch {
			case strings.HasPrefix(rcpt, "busy@"):
				return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "mailbox full"}
			case strings.HasPrefix(rcpt, "gone@"):
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
			}
			return nil
		},
	})
	_, out := f.deliver("d.test", "ok@d.test", "busy@d.test", "gone@d.test")
	want := []struct {
		delivered, permanent bool
		code                 int
		status               string
	}{{true, false, 250, "2.0.0"}, {false, false, 452, "4.2.2"}, {false, true, 550, "5.1.1"}}
	for i, w := range want {
		o := out[i]
		if o.Delivered != w.delivered || o.Permanent != w.permanent || o.Code != w.code || o.Status != w.status || o.RemoteMTA != "mx.d.test" {
			t.Errorf("outcome %d: %+v, want %+v", i, o, w)
		}
	}
	msgs := sink.Messages()
	if len(msgs) != 1 || len(msgs[0].To) != 1 || msgs[0].To[0] != "ok@d.test" {
		t.Errorf("DATA went to %+v, want ok@ only", msgs)
	}
}

func TestDeliverFallsBackToNextMX(t *testing.T) {
	f := newDeliveryFixture(t, nil)
	f.dns.AddMX("d.test", "down.d.test", 10)
	f.dns.AddA("down.d.test", "127.0.0.2") // nothing listens there
	backup := f.mx("d.test", "backup.d.test", "127.0.0.3", 20, testutil.SinkOptions{})
	att, out := f.deliver("d.test", "bob@d.test")
	if !out[0].Delivered || att.MXHost != "backup.d.test" || len(backup.Messages()) != 1 {
		t.Errorf("fallback: %+v %+v", att, out)
	}

	f.dns.AddMX("alldown.test", "down.d.test", 10)
	att, out = f.deliver("alldown.test", "bob@alldown.test")
	if out[0].Delivered || out[0].Permanent || !strings.HasPrefix(out[0].Status, "4.") {
		t.Errorf("all hosts down must defer: %+v %+v", att, out)
	}
}

func TestDeliverReusesConnections(t *testing.T) {
	f := newDeliveryFixture(t, nil)
	sink := f.mx("d.test", "mx.d.test", "127.0.0.2", 10, testutil.SinkOptions{TLS: true, CA: f.ca})
	for i := range 3 {
		if _, out := f.deliver("d.test", fmt.Sprintf("r%d@d.test", i)); !out[0].Delivered {
			t.Fatalf("delivery %d: %+v", i, out)
		}
	}
	if n := sink.Connections(); n != 1 {
		t.Errorf("3 sequential messages used %d connections, want 1", n)
	}
	if len(sink.Messages()) != 3 {
		t.Errorf("sink got %d messages", len(sink.Messages()))
	}
}

func TestDeliverViaSmarthostWithAuth(t *testing.T) {
	ca := testutil.NewCA(t)
	// The relay's certificate names the address we connect to, as a real
	// smarthost's names its host.
	relay := testutil.NewSMTPSink(t, testutil.SinkOptions{TLS: true, CA: ca, Hostname: "127.0.0.1", AuthUser: "gw", AuthPassword: "relaypw"})
	f := newDeliveryFixture(t, &Smarthost{Addr: relay.Addr(), Username: "gw", Password: "relaypw", TLS: "starttls"})
	f.d.opts.RootCAs = ca.Pool()
	att, out := f.deliver("", "a@one.test", "b@two.test")
	if !out[0].Delivered || !out[1].Delivered || att.Destination != relay.Addr() || att.TLSVersion == "" {
		t.Fatalf("smarthost: %+v %+v", att, out)
	}
	if m := relay.Messages()[0]; len(m.To) != 2 || m.AuthUser != "gw" {
		t.Errorf("relay received %+v", m)
	}

	wrong := newDeliveryFixture(t, &Smarthost{Addr: relay.Addr(), Username: "gw", Password: "bad", TLS: "starttls"})
	wrong.d.opts.RootCAs = ca.Pool()
	if _, out := wrong.deliver("", "a@one.test"); out[0].Delivered || out[0].Permanent {
		t.Errorf("bad smarthost password must defer: %+v", out)
	}

	// A smarthost whose certificate does not verify gets neither the
	// credentials nor the mail.
	impostor := testutil.NewSMTPSink(t, testutil.SinkOptions{TLS: true, Hostname: "127.0.0.1", AuthUser: "gw", AuthPassword: "relaypw"})
	fooled := newDeliveryFixture(t, &Smarthost{Addr: impostor.Addr(), Username: "gw", Password: "relaypw", TLS: "starttls"})
	if _, out := fooled.deliver("", "a@one.test"); out[0].Delivered || len(impostor.Messages()) != 0 || !strings.Contains(out[0].Message, "certificate not verified") {
		t.Errorf("unverified smarthost: %+v", out[0])
	}

	plain := testutil.NewSMTPSink(t, testutil.SinkOptions{})
	strict := newDeliveryFixture(t, &Smarthost{Addr: plain.Addr(), TLS: "starttls"})
	if _, out := strict.deliver("", "a@one.test"); out[0].Delivered || len(plain.Messages()) != 0 {
		t.Errorf("smarthost without STARTTLS must not get the message in plaintext: %+v", out)
	}
}

func TestDeliverTLSLevels(t *testing.T) {
	f := newDeliveryFixture(t, nil)
	good := f.mx("good.test", "mx.good.test", "127.0.0.2", 10, testutil.SinkOptions{TLS: true, CA: f.ca, REQUIRETLS: true})
	self := f.mx("selfsigned.test", "mx.selfsigned.test", "127.0.0.3", 10, testutil.SinkOptions{TLS: true})
	plain := f.mx("plain.test", "mx.plain.test", "127.0.0.4", 10, testutil.SinkOptions{})
	send := func(domain string, req policy.TLSRequirement) (queue.Attempt, queue.RcptOutcome) {
		att, out := f.d.Deliver(context.Background(), Request{
			ID: "T", From: "alice@org.test", Domain: domain, Recipients: []string{"bob@" + domain},
			Body: Bytes("Subject: t\r\n\r\nhello\r\n"), TLS: req,
		})
		return att, out[0]
	}
	level := func(l policy.TLSLevel) policy.TLSRequirement {
		return policy.TLSRequirement{Level: l, RequiredBy: "tls_policy " + l.String() + " (test)"}
	}

	for _, tc := range []struct {
		domain    string
		req       policy.TLSRequirement
		delivered bool
		status    string
	}{
		{"plain.test", level(policy.TLSEncrypt), false, "4.7.5"},
		{"selfsigned.test", level(policy.TLSEncrypt), true, "2.0.0"},
		{"selfsigned.test", level(policy.TLSVerify), false, "4.7.5"},
		{"good.test", level(policy.TLSVerify), true, "2.0.0"},
	} {
		att, o := send(tc.domain, tc.req)
		if o.Delivered != tc.delivered || o.Status != tc.status || o.Permanent {
			t.Errorf("%s at %s: %+v, want delivered=%v status %s", tc.domain, tc.req.Level, o, tc.delivered, tc.status)
		}
		if att.TLSLevel != tc.req.Level.String() || att.TLSRequiredBy != tc.req.RequiredBy {
			t.Errorf("attempt record %q %q", att.TLSLevel, att.TLSRequiredBy)
		}
		if !tc.delivered && !strings.Contains(o.Message, "required by tls_policy") {
			t.Errorf("deferral does not say why: %q", o.Message)
		}
	}
	if len(plain.Messages()) != 0 {
		t.Error("a destination without STARTTLS got mail that required TLS")
	}
	if n := len(self.Messages()); n != 1 {
		t.Errorf("self-signed destination got %d messages, want 1 (encrypt only)", n)
	}

	// "none" never starts TLS on a new connection, even where offered.
	f.d.pool.closeAll()
	if att, o := send("good.test", level(policy.TLSNone)); !o.Delivered || att.TLSVersion != "" {
		t.Errorf("none: %+v %+v", att, o)
	}

	// REQUIRETLS: verified TLS and a next hop that offers REQUIRETLS.
	rtls := policy.DecideTLS(policy.TLSInputs{Domain: "x", Configured: policy.TLSMay, RequireTLS: true})
	if _, o := send("good.test", rtls); !o.Delivered {
		t.Errorf("REQUIRETLS to a verified REQUIRETLS host: %+v", o)
	}
	msgs := good.Messages()
	if last := msgs[len(msgs)-1]; !last.RequireTLS {
		t.Error("REQUIRETLS not passed on to the next hop")
	}
	f.dns.AddMX("noext.test", "mx.good2.test", 10)
	f.dns.AddA("mx.good2.test", "127.0.0.5")
	f.mx("noext.test", "mx.good2.test", "127.0.0.5", 10, testutil.SinkOptions{TLS: true, CA: f.ca})
	if _, o := send("noext.test", rtls); o.Delivered || !o.Permanent || o.Status != "5.7.30" {
		t.Errorf("REQUIRETLS to a host without the extension: %+v, want a 5.7.30 bounce", o)
	}
}

func TestDeliverDANE(t *testing.T) {
	f := newDeliveryFixture(t, nil)
	f.d.opts.Resolver.DNSSECTrusted = true
	f.dns.SetAD(true)
	spki := func(c *x509.Certificate) string {
		sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
		return hex.EncodeToString(sum[:])
	}
	send := func(domain string, req policy.TLSRequirement) (queue.Attempt, queue.RcptOutcome) {
		att, out := f.d.Deliver(context.Background(), Request{
			ID: "T", From: "alice@org.test", Domain: domain, Recipients: []string{"bob@" + domain},
			Body: Bytes("Subject: t\r\n\r\nhello\r\n"), TLS: req,
		})
		return att, out[0]
	}

	// DANE-EE with a certificate no CA vouches for: DANE authenticates it.
	ee := f.mx("ee.test", "mx.ee.test", "127.0.0.2", 10, testutil.SinkOptions{TLS: true})
	f.dns.AddTLSA("_25._tcp.mx.ee.test", 3, 1, 1, spki(ee.Certificate()))
	att, o := send("ee.test", policy.TLSRequirement{Level: policy.TLSVerify, RequiredBy: "tls_policy verify (test)"})
	if !o.Delivered || !strings.HasPrefix(att.DANE, "3 1 1 ") || att.CertVerified {
		t.Errorf("DANE-EE: %+v %+v", att, o)
	}

	// A TLSA record the certificate does not match: no delivery.
	bad := f.mx("bad.test", "mx.bad.test", "127.0.0.3", 10, testutil.SinkOptions{TLS: true, CA: f.ca})
	f.dns.AddTLSA("_25._tcp.mx.bad.test", 3, 1, 1, strings.Repeat("00", 32))
	if _, o := send("bad.test", policy.TLSRequirement{}); o.Delivered || o.Status != "4.7.5" || !strings.Contains(o.Message, "matches none of the TLSA records") {
		t.Errorf("TLSA mismatch: %+v", o)
	}
	if len(bad.Messages()) != 0 {
		t.Error("a host failing DANE got the message")
	}

	// DANE-TA: the chain's CA certificate is the trust anchor.
	f.mx("ta.test", "mx.ta.test", "127.0.0.4", 10, testutil.SinkOptions{TLS: true, CA: f.ca})
	sum := sha256.Sum256(f.ca.Cert().Raw)
	f.dns.AddTLSA("_25._tcp.mx.ta.test", 2, 0, 1, hex.EncodeToString(sum[:]))
	if att, o := send("ta.test", policy.TLSRequirement{}); !o.Delivered || !strings.HasPrefix(att.DANE, "2 0 1 ") {
		t.Errorf("DANE-TA: %+v %+v", att, o)
	}

	// Only PKIX usages: unusable, yet TLS becomes mandatory.
	f.mx("pkix.test", "mx.pkix.test", "127.0.0.5", 10, testutil.SinkOptions{})
	f.dns.AddTLSA("_25._tcp.mx.pkix.test", 1, 1, 1, strings.Repeat("11", 32))
	if _, o := send("pkix.test", policy.TLSRequirement{}); o.Delivered || o.Status != "4.7.5" {
		t.Errorf("unusable TLSA must still require TLS: %+v", o)
	}

	// dane-only without TLSA records: no delivery.
	f.mx("nodane.test", "mx.nodane.test", "127.0.0.6", 10, testutil.SinkOptions{TLS: true, CA: f.ca})
	if _, o := send("nodane.test", policy.TLSRequirement{Level: policy.TLSEncrypt, DANEOnly: true, RequiredBy: "tls_policy dane-only (nodane.test)"}); o.Delivered || !strings.Contains(o.Message, "no usable DNSSEC-validated TLSA records") {
		t.Errorf("dane-only without TLSA: %+v", o)
	}

	// Without the AD bit the same bad record is not believed: opportunistic delivery.
	f.dns.SetAD(false)
	f.d.pool.closeAll()
	if att, o := send("bad.test", policy.TLSRequirement{}); !o.Delivered || att.DANE != "" {
		t.Errorf("unauthenticated TLSA must be ignored: %+v %+v", att, o)
	}
}

// TestTLSLevelTable runs every level against a destination without
// STARTTLS, one with a self-signed certificate, one with a certificate for
// another name, and one with a good certificate.
func TestTLSLevelTable(t *testing.T) {
	f := newDeliveryFixture(t, nil)
	f.mx("plain.test", "mx.plain.test", "127.0.0.2", 10, testutil.SinkOptions{})
	f.mx("self.test", "mx.self.test", "127.0.0.3", 10, testutil.SinkOptions{TLS: true})
	f.dns.AddMX("wrongname.test", "mx.wrongname.test", 10)
	f.dns.AddA("mx.wrongname.test", "127.0.0.4")
	testutil.NewSMTPSink(t, testutil.SinkOptions{ListenAddr: fmt.Sprintf("127.0.0.4:%d", f.port), Hostname: "some.other.name", TLS: true, CA: f.ca})
	f.mx("good.test", "mx.good.test", "127.0.0.5", 10, testutil.SinkOptions{TLS: true, CA: f.ca})

	want := map[policy.TLSLevel]map[string]bool{
		policy.TLSNone:    {"plain.test": true, "self.test": true, "wrongname.test": true, "good.test": true},
		policy.TLSMay:     {"plain.test": true, "self.test": true, "wrongname.test": true, "good.test": true},
		policy.TLSEncrypt: {"plain.test": false, "self.test": true, "wrongname.test": true, "good.test": true},
		policy.TLSVerify:  {"plain.test": false, "self.test": false, "wrongname.test": false, "good.test": true},
	}
	for _, level := range []policy.TLSLevel{policy.TLSNone, policy.TLSMay, policy.TLSEncrypt, policy.TLSVerify} {
		for _, domain := range []string{"plain.test", "self.test", "wrongname.test", "good.test"} {
			f.d.pool.closeAll()
			att, out := f.d.Deliver(context.Background(), Request{
				ID: "T", From: "a@org.test", Domain: domain, Recipients: []string{"b@" + domain},
				Body: Bytes("Subject: t\r\n\r\nx\r\n"), TLS: policy.TLSRequirement{Level: level, RequiredBy: "test"},
			})
			o := out[0]
			if o.Delivered != want[level][domain] {
				t.Errorf("%s to %s: delivered=%v (%s), want %v", level, domain, o.Delivered, o.Message, want[level][domain])
			}
			if !o.Delivered && (o.Permanent || o.Status != "4.7.5") {
				t.Errorf("%s to %s: a level's failure must defer with 4.7.5, got %+v", level, domain, o)
			}
			if o.Delivered && level == policy.TLSNone && att.TLSVersion != "" {
				t.Errorf("none to %s used TLS", domain)
			}
			if o.Delivered && level >= policy.TLSMay && domain != "plain.test" && att.TLSVersion == "" {
				t.Errorf("%s to %s went in plaintext although STARTTLS is offered", level, domain)
			}
		}
	}
}

func TestDANELookupFailureDefers(t *testing.T) {
	f := newDeliveryFixture(t, nil)
	f.d.opts.Resolver.DNSSECTrusted = true
	f.dns.SetAD(true)
	sink := f.mx("d.test", "mx.d.test", "127.0.0.2", 10, testutil.SinkOptions{TLS: true, CA: f.ca})
	f.dns.SetServfail("_25._tcp.mx.d.test")
	_, out := f.d.Deliver(context.Background(), Request{ID: "T", From: "a@org.test", Domain: "d.test",
		Recipients: []string{"b@d.test"}, Body: Bytes("Subject: t\r\n\r\nx\r\n")})
	if out[0].Delivered || out[0].Permanent || !strings.Contains(out[0].Message, "TLSA lookup") {
		t.Errorf("TLSA SERVFAIL under a secure MX must defer: %+v", out[0])
	}
	if len(sink.Messages()) != 0 {
		t.Error("delivered without knowing the TLSA records")
	}
}

// TestOpportunisticTLSFallsBackToClear: a server that offers STARTTLS
// but whose TLS we cannot speak still gets mail at level "may", in
// clear, and the attempt says so; at "encrypt", with an MTA-STS
// policy, or when the domain took mail over TLS before (its TLS history:
// a failing handshake now may be an attacker's doing), it does not.
func TestOpportunisticTLSFallsBackToClear(t *testing.T) {
	f := newDeliveryFixture(t, nil)
	old := f.mx("old.test", "mx.old.test", "127.0.0.2", 10, testutil.SinkOptions{TLS: true, BrokenTLS: true, CA: f.ca})
	deliver := func(tlsReq policy.TLSRequirement) (queue.Attempt, []queue.RcptOutcome) {
		f.d.pool.closeAll()
		return f.d.Deliver(context.Background(), Request{ID: "T", From: "a@org.test", Domain: "old.test",
			Recipients: []string{"b@old.test"}, Body: Bytes("Subject: t\r\n\r\nx\r\n"), TLS: tlsReq})
	}
	att, out := deliver(policy.TLSRequirement{Level: policy.TLSMay})
	if !out[0].Delivered || att.TLSVersion != "" || !strings.Contains(att.TLSFallback, "STARTTLS handshake") {
		t.Fatalf("at may: %+v %+v, want delivered in clear with the fallback recorded", att, out[0])
	}
	if m := old.Messages(); len(m) != 1 || m[0].TLS != "" {
		t.Errorf("sink got %d messages (TLS %q)", len(m), m[0].TLS)
	}
	pol := &policy.MTASTSPolicy{Mode: policy.MTASTSTesting, MX: []string{"mx.old.test"}, MaxAge: time.Hour}
	// The level "may" configured, and the domain's history as the
	// scheduler hands it to the transport decision.
	withHistory := func(h policy.TLSHistory) policy.TLSRequirement {
		return policy.DecideTLS(policy.TLSInputs{Domain: "old.test", Configured: policy.TLSMay, ConfiguredBy: "default", History: &h})
	}
	for name, req := range map[string]policy.TLSRequirement{
		"encrypt":              {Level: policy.TLSEncrypt, RequiredBy: "test"},
		"mta-sts testing":      {Level: policy.TLSMay, MTASTS: pol},
		"tls history":          withHistory(policy.TLSHistory{TLSSeen: true, Since: "2026-01-02"}),
		"verified tls history": withHistory(policy.TLSHistory{TLSSeen: true, Verified: true, Since: "2026-01-02"}),
	} {
		att, out := deliver(req)
		if out[0].Delivered || out[0].Permanent || att.TLSFallback != "" {
			t.Errorf("%s: %+v %+v, want deferred, never in clear", name, att, out[0])
		}
		if strings.Contains(name, "history") && !strings.Contains(att.TLSRequiredBy, "domain history") {
			t.Errorf("%s: the attempt says TLS was required by %q", name, att.TLSRequiredBy)
		}
	}
	if n := len(old.Messages()); n != 1 {
		t.Errorf("%d messages in clear, want only the one at may", n)
	}
}

// TestNoSessionSaysWhatFailed: an attempt that reached no session says
// what failed at each host (refused, the greeting's refusal), not merely
// that none accepted a connection.
func TestNoSessionSaysWhatFailed(t *testing.T) {
	f := newDeliveryFixture(t, nil)
	f.dns.AddMX("down.test", "mx.down.test", 10)
	f.dns.AddA("mx.down.test", "127.0.0.2") // nothing listens there
	att, out := f.deliver("down.test", "bob@down.test")
	if att.NoConnection != "no mail host took a session: connection refused" || !strings.Contains(att.Reply, "(connection refused)") ||
		!strings.HasPrefix(out[0].Status, "4.") {
		t.Errorf("refused: %q / %q / %+v", att.NoConnection, att.Reply, out[0])
	}

	// A server that refuses at its greeting, beside the dead one.
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.4:%d", f.port))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for i := 0; i < 5; i++ {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("554 5.7.1 no service for you\r\n"))
			c.Close()
		}
	}()
	f.dns.AddMX("down.test", "busy.down.test", 20)
	f.dns.AddA("busy.down.test", "127.0.0.4")
	att, _ = f.deliver("down.test", "bob@down.test")
	if att.NoConnection != "no mail host took a session: connection refused, refused with 554" || !strings.Contains(att.Reply, "no service for you") {
		t.Errorf("refused and greeting refusal: %q / %q", att.NoConnection, att.Reply)
	}
}
