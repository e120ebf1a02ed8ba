package smtpin

import (
	"bytes"
	"encoding/base64"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/sealgate/sealgate/config"
)

const (
	ourTenantID   = "1a2b3c4d-0000-4000-8000-00000000abcd"
	otherTenantID = "99999999-0000-4000-8000-000000000000"
)

// tenantConfig binds loopback (where the tests connect from) to the
// tenant "ours"; loopback is not a trusted network here.
func tenantConfig(t *testing.T) config.Inbound {
	cfg := testInboundConfig(t)
	cfg.TrustedNetworks = []string{"10.0.0.0/8"}
	cfg.GreetPause = 0
	cfg.Tenants = []config.Tenant{{Name: "ours", Networks: []string{"127.0.0.0/8"},
		SenderDomains: []string{"Example.ORG."}, M365TenantID: strings.ToUpper(ourTenantID)}}
	return cfg
}

// syncBuffer collects log output written by session goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func startTenantInbound(t *testing.T, cfg config.Inbound) (*inboundFixture, *syncBuffer) {
	logs := &syncBuffer{}
	f := startInboundWith(t, cfg, func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(logs, nil)) })
	return f, logs
}

func tenantMessage(from string, ids ...string) string {
	msg := "From: Alice <" + from + ">\r\nTo: b@dest.test\r\nSubject: hi\r\n"
	for _, id := range ids {
		msg += "X-MS-Exchange-CrossTenant-Id: " + id + "\r\n"
	}
	return msg + "\r\nbody\r\n.\r\n"
}

func TestTenantBindingAcceptsOurMail(t *testing.T) {
	f, _ := startTenantInbound(t, tenantConfig(t))
	c := dialSMTP(t, f.addr)
	c.cmd("EHLO mail.protection.test", "250 ")
	c.cmd("MAIL FROM:<alice@sales.example.org>", "250 ")
	c.cmd("RCPT TO:<b@dest.test>", "250 ")
	c.cmd("DATA", "354 ")
	c.send(tenantMessage("alice@Example.org", ourTenantID))
	c.expect("250 2.0.0 Ok: queued as ")
	if f.spool.count() != 1 {
		t.Fatalf("%d messages spooled, want 1", f.spool.count())
	}
}

func TestTenantBindingRefusesAnotherSenderDomainAtMail(t *testing.T) {
	f, logs := startTenantInbound(t, tenantConfig(t))
	c := dialSMTP(t, f.addr)
	c.cmd("EHLO mail.protection.test", "250 ")
	c.cmd("MAIL FROM:<mallory@evil.test>", "550 5.7.1 Relaying denied: envelope sender domain evil.test is not one of the tenant's sender domains")
	c.cmd("MAIL FROM:<mallory@notexample.org>", "550 5.7.1 ")
	c.cmd("MAIL FROM:<>", "550 5.7.1 Relaying denied: the envelope sender has no domain")
	c.cmd("RCPT TO:<b@dest.test>", "503 ")
	if l := logs.String(); !strings.Contains(l, "tenant=ours") || !strings.Contains(l, "evil.test is not one of") {
		t.Errorf("no log line naming the tenant and what failed:\n%s", l)
	}
	if f.spool.count() != 0 {
		t.Error("a message was spooled")
	}
}

func TestTenantBindingRefusesAtData(t *testing.T) {
	for name, tc := range map[string]struct{ msg, want string }{
		"header From of another domain": {tenantMessage("ceo@evil.test", ourTenantID),
			"550 5.7.1 Relaying denied: header From domain evil.test is not one of the tenant's sender domains"},
		"another tenant's ID": {tenantMessage("alice@example.org", otherTenantID),
			"550 5.7.1 Relaying denied: X-MS-Exchange-CrossTenant-Id is another tenant's"},
		"no tenant ID": {tenantMessage("alice@example.org"),
			"550 5.7.1 Relaying denied: the message has no X-MS-Exchange-CrossTenant-Id"},
		"ours added above theirs": {tenantMessage("alice@example.org", ourTenantID, otherTenantID),
			"550 5.7.1 Relaying denied: X-MS-Exchange-CrossTenant-Id is another tenant's"},
		"no From": {"To: b@dest.test\r\nX-MS-Exchange-CrossTenant-Id: " + ourTenantID + "\r\n\r\nbody\r\n.\r\n",
			"550 5.7.1 Relaying denied: the message has 0 From header fields, not one"},
	} {
		t.Run(name, func(t *testing.T) {
			f, logs := startTenantInbound(t, tenantConfig(t))
			c := dialSMTP(t, f.addr)
			c.cmd("EHLO mail.protection.test", "250 ")
			c.cmd("MAIL FROM:<alice@example.org>", "250 ")
			c.cmd("RCPT TO:<b@dest.test>", "250 ")
			c.cmd("DATA", "354 ")
			c.send(tc.msg)
			c.expect(tc.want)
			c.cmd("NOOP", "250 ") // the session stays in step
			if f.spool.count() != 0 {
				t.Error("a message was spooled")
			}
			if l := logs.String(); !strings.Contains(l, "tenant binding failed") || !strings.Contains(l, "tenant=ours") {
				t.Errorf("no log line naming the tenant:\n%s", l)
			}
		})
	}
}

// Every tenant of a cloud sends from the same ranges: a message passes
// under any one tenant's binding, and only under one of them whole.
func TestTenantBindingSharedRanges(t *testing.T) {
	cfg := tenantConfig(t)
	cfg.Tenants = append(cfg.Tenants, config.Tenant{Name: "theirs", Networks: []string{"127.0.0.0/8"},
		SenderDomains: []string{"other.test"}, M365TenantID: otherTenantID})
	f, _ := startTenantInbound(t, cfg)
	c := dialSMTP(t, f.addr)
	c.cmd("EHLO mail.protection.test", "250 ")
	c.cmd("MAIL FROM:<bob@other.test>", "250 ")
	c.cmd("RCPT TO:<b@dest.test>", "250 ")
	c.cmd("DATA", "354 ")
	// Their envelope, our header From and ID: no single tenant's.
	c.send(tenantMessage("alice@example.org", ourTenantID))
	c.expect("550 5.7.1 ")
	c.cmd("MAIL FROM:<bob@other.test>", "250 ")
	c.cmd("RCPT TO:<b@dest.test>", "250 ")
	c.cmd("DATA", "354 ")
	c.send(tenantMessage("bob@other.test", otherTenantID))
	c.expect("250 ")
	if f.spool.count() != 1 {
		t.Errorf("%d messages spooled, want 1", f.spool.count())
	}
}

func TestClientOutsideEveryNetworkIsRefusedAsBefore(t *testing.T) {
	cfg := tenantConfig(t)
	cfg.Tenants[0].Networks = []string{"192.0.2.0/24"}
	f, _ := startTenantInbound(t, cfg)
	c := dialSMTP(t, f.addr)
	c.cmd("EHLO client.test", "250 ")
	c.cmd("MAIL FROM:<alice@example.org>", "250 ")
	c.cmd("RCPT TO:<b@dest.test>", "550 5.7.1 Relaying denied: authenticate or send from a trusted network")
}

func TestAuthenticatedClientIsNotBoundByTenants(t *testing.T) {
	cfg := tenantConfig(t)
	cfg.Auth.Users = []config.User{{Username: "alice", PasswordHash: testHash(t, "pw")}}
	f, _ := startTenantInbound(t, cfg)
	c := dialSMTP(t, f.addr)
	c.cmd("EHLO client.test", "250 ")
	c.startTLS()
	c.cmd("EHLO client.test", "250 ")
	c.cmd("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00alice\x00pw")), "235 ")
	c.cmd("MAIL FROM:<alice@elsewhere.test>", "250 ")
	c.cmd("RCPT TO:<b@dest.test>", "250 ")
	c.cmd("DATA", "354 ")
	c.send(tenantMessage("alice@elsewhere.test"))
	c.expect("250 ")
}
