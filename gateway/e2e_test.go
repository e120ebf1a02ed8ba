package gateway_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"
	"go.yaml.in/yaml/v3"

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/gateway"
	"github.com/sealgate/sealgate/internal/testutil"
	"github.com/sealgate/sealgate/queue"
)

// e2e is one gateway on loopback with its DNS server and destination
// sinks, all in this process.
type e2e struct {
	t    *testing.T
	dns  *testutil.DNSServer
	ca   *testutil.CA
	gw   *gateway.Gateway
	port int // the destination SMTP port every sink listens on
	dir  string
}

// newE2E starts a gateway whose destinations are sinks on 127.0.0.x at
// one shared port (outbound.smtp_port is global, as port 25 is in real
// life). extra is YAML merged into the test config.
func newE2E(t *testing.T, extra string) *e2e {
	t.Helper()
	return newE2EWith(t, testutil.NewDNSServer(t), testutil.NewCA(t), extra)
}

// newE2EWith is newE2E with a DNS server and CA the test already set up.
func newE2EWith(t *testing.T, dns *testutil.DNSServer, ca *testutil.CA, extra string) *e2e {
	t.Helper()
	e := &e2e{t: t, dns: dns, ca: ca, dir: t.TempDir()}
	e.port = testutil.FreePort(t)
	caFile := e.ca.WritePEM(t, e.dir)
	yaml := fmt.Sprintf(`
hostname: gw.test
data_dir: %s
log: {level: debug}
inbound:
  listen: 127.0.0.1:0
admin:
  listen: 127.0.0.1:0
queue:
  retry_initial: 100ms
  retry_max: 200ms
outbound:
  dns_resolver: %s
  smtp_port: %d
  extra_root_cas: [%s]
  connect_timeout: 2s
  command_timeout: 5s
%s`, filepath.Join(e.dir, "data"), e.dns.Addr(), e.port, caFile, extra)
	cfg, err := config.Parse("e2e.yaml", mergeYAML(t, yaml))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	gw, err := gateway.New(cfg, logger)
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	if err := gw.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := gw.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	e.gw = gw
	return e
}

// destination adds a domain whose MX is a sink on ip (127.0.0.x).
func (e *e2e) destination(domain, ip string, opts testutil.SinkOptions) *testutil.SMTPSink {
	e.t.Helper()
	host := "mx." + domain
	e.dns.AddMX(domain, host, 10)
	e.dns.AddA(host, ip)
	opts.ListenAddr = fmt.Sprintf("%s:%d", ip, e.port)
	opts.Hostname = host
	opts.CA = e.ca
	return testutil.NewSMTPSink(e.t, opts)
}

// send submits one message over STARTTLS and returns the 250 reply's
// queue ID.
func (e *e2e) send(from string, to []string, msg string) string {
	e.t.Helper()
	id, err := e.trySend(from, to, msg)
	if err != nil {
		e.t.Fatalf("send: %v", err)
	}
	return id
}

func (e *e2e) trySend(from string, to []string, msg string) (string, error) {
	cl, err := smtp.DialStartTLS(e.gw.SMTPAddr(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return "", err
	}
	defer cl.Close()
	if err := cl.Hello("client.test"); err != nil {
		return "", err
	}
	if err := cl.Mail(from, nil); err != nil {
		return "", err
	}
	for _, r := range to {
		if err := cl.Rcpt(r, nil); err != nil {
			return "", err
		}
	}
	w, err := cl.Data()
	if err != nil {
		return "", err
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		return "", err
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", err
	}
	_, id, ok := strings.Cut(resp.StatusText, "queued as ")
	if !ok {
		return "", fmt.Errorf("250 reply without a queue ID: %q", resp.StatusText)
	}
	return strings.TrimSpace(id), cl.Quit()
}

// waitState polls the spool until rcpt of id reaches state.
func (e *e2e) waitState(id, rcpt string, state queue.State) *queue.Message {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		m, err := e.gw.Store().Get(id)
		if err == nil {
			for _, r := range m.Recipients {
				if r.Address == rcpt && r.State == state {
					return m
				}
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s for %s never reached %s; last: %+v (err %v)", id, rcpt, state, m, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func message(subject, body string) string {
	return "From: Alice <alice@org.test>\r\nTo: bob@dest.test\r\nSubject: " + subject +
		"\r\nMessage-ID: <" + subject + "@org.test>\r\n\r\n" + body + "\r\n"
}

func TestDeliveryOverVerifiedTLS(t *testing.T) {
	e := newE2E(t, "")
	sink := e.destination("dest.test", "127.0.0.2", testutil.SinkOptions{TLS: true})
	id := e.send("alice@org.test", []string{"bob@dest.test"}, message("hello", "Patient letter follows."))

	got := sink.WaitMessages(t, 1, 20*time.Second)[0]
	if got.From != "alice@org.test" || len(got.To) != 1 || got.To[0] != "bob@dest.test" {
		t.Errorf("envelope at destination: from %q to %q", got.From, got.To)
	}
	if got.TLS == "" {
		t.Error("destination received the message in plaintext although it offers STARTTLS")
	}
	orig := message("hello", "Patient letter follows.")
	if !bytes.HasSuffix(got.Data, []byte(orig)) {
		t.Errorf("delivered message does not end with the submitted bytes:\n%s", got.Data)
	}
	received, _, _ := bytes.Cut(got.Data, []byte("\r\nFrom: Alice"))
	for _, want := range []string{"Received: from client.test", "by gw.test", "TLS1.3"} {
		if !bytes.Contains(received, []byte(want)) {
			t.Errorf("Received header lacks %q:\n%s", want, received)
		}
	}

	m := e.waitState(id, "bob@dest.test", queue.StateDelivered)
	att := lastAttempt(m)
	if att == nil || att.TLSVersion != "TLS1.3" || !att.CertVerified || att.MXHost != "mx.dest.test" || att.IP != "127.0.0.2" {
		t.Errorf("attempt record: %+v", att)
	}
}

func TestTemporaryFailureThenSuccess(t *testing.T) {
	e := newE2E(t, "")
	sink := e.destination("dest.test", "127.0.0.2", testutil.SinkOptions{})
	sink.FailRcptTimes(2, &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "mailbox busy"})
	id := e.send("alice@org.test", []string{"bob@dest.test"}, message("retry", "body"))

	sink.WaitMessages(t, 1, 20*time.Second)
	m := e.waitState(id, "bob@dest.test", queue.StateDelivered)
	if r := m.Recipients[0]; r.Attempts < 2 {
		t.Errorf("delivered after %d deferred attempts, want 2", r.Attempts)
	}
	attempts := 0
	for _, ev := range m.Events {
		if ev.Kind == "attempt" {
			attempts++
		}
	}
	if attempts != 3 {
		t.Errorf("history has %d attempts, want 3 (two 451, one 250)", attempts)
	}
}

func TestPermanentFailureSendsDSN(t *testing.T) {
	e := newE2E(t, "")
	dest := e.destination("dest.test", "127.0.0.2", testutil.SinkOptions{
		RcptReply: func(rcpt string) *smtp.SMTPError {
			if strings.HasPrefix(rcpt, "nobody@") {
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
			}
			return nil
		},
	})
	senderBox := e.destination("org.test", "127.0.0.3", testutil.SinkOptions{})

	id := e.send("alice@org.test", []string{"nobody@dest.test", "bob@dest.test"}, message("bounce", "secret body text"))
	e.waitState(id, "nobody@dest.test", queue.StateBounced)
	e.waitState(id, "bob@dest.test", queue.StateDelivered)
	if n := len(dest.Messages()); n != 1 {
		t.Errorf("destination got %d messages, want 1 (to bob only)", n)
	}

	dsn := senderBox.WaitMessages(t, 1, 20*time.Second)[0]
	if dsn.From != "" || len(dsn.To) != 1 || dsn.To[0] != "alice@org.test" {
		t.Errorf("DSN envelope from %q to %q, want <> to alice", dsn.From, dsn.To)
	}
	for _, want := range []string{
		"multipart/report; report-type=delivery-status",
		"Final-Recipient: rfc822; nobody@dest.test",
		"Action: failed",
		"Status: 5.1.1",
		"Remote-MTA: dns; mx.dest.test",
		"Subject: bounce", // the original header comes back
	} {
		if !bytes.Contains(dsn.Data, []byte(want)) {
			t.Errorf("DSN lacks %q:\n%s", want, dsn.Data)
		}
	}
	if bytes.Contains(dsn.Data, []byte("secret body text")) {
		t.Error("DSN echoes the original body")
	}
	if bytes.Contains(dsn.Data, []byte("bob@dest.test\r\nAction")) {
		t.Error("DSN reports the delivered recipient")
	}
}

func TestServfailDefersAndNullMXBounces(t *testing.T) {
	e := newE2E(t, "")
	senderBox := e.destination("org.test", "127.0.0.3", testutil.SinkOptions{})
	e.dns.SetServfail("broken.test")
	e.dns.AddNullMX("nomail.test")

	id := e.send("alice@org.test", []string{"a@broken.test", "b@nomail.test"}, message("dns", "body"))
	m := e.waitState(id, "b@nomail.test", queue.StateBounced)
	m = e.waitState(id, "a@broken.test", queue.StateDeferred)
	for _, r := range m.Recipients {
		switch r.Address {
		case "a@broken.test":
			if !strings.HasPrefix(r.Status, "4.") {
				t.Errorf("SERVFAIL recipient status %q, want 4.x.x", r.Status)
			}
		case "b@nomail.test":
			if r.Status != "5.1.10" {
				t.Errorf("null MX recipient status %q, want 5.1.10", r.Status)
			}
		}
	}
	dsn := senderBox.WaitMessages(t, 1, 20*time.Second)[0]
	if !bytes.Contains(dsn.Data, []byte("Final-Recipient: rfc822; b@nomail.test")) ||
		bytes.Contains(dsn.Data, []byte("Final-Recipient: rfc822; a@broken.test")) {
		t.Errorf("DSN should name only the null-MX recipient:\n%s", dsn.Data)
	}
}

func TestExpiryBouncesWithDSN(t *testing.T) {
	e := newE2E(t, "queue: {expiry: 1s, retry_initial: 100ms, retry_max: 200ms}\n")
	senderBox := e.destination("org.test", "127.0.0.3", testutil.SinkOptions{})
	e.dns.SetServfail("broken.test")

	id := e.send("alice@org.test", []string{"a@broken.test"}, message("expiry", "body"))
	m := e.waitState(id, "a@broken.test", queue.StateBounced)
	if r := m.Recipients[0]; r.Status != "4.4.7" {
		t.Errorf("expired recipient status %q, want 4.4.7", r.Status)
	}
	dsn := senderBox.WaitMessages(t, 1, 20*time.Second)[0]
	if !bytes.Contains(dsn.Data, []byte("Status: 4.4.7")) {
		t.Errorf("expiry DSN lacks Status 4.4.7:\n%s", dsn.Data)
	}
}

func TestSpoolHoldsNoPlaintext(t *testing.T) {
	e := newE2E(t, "")
	e.dns.SetServfail("dest.test") // keep it spooled
	const marker = "PHI-MARKER-7f3a9c"
	id := e.send("alice@org.test", []string{"bob@dest.test"}, message("confidential", "diagnosis "+marker))
	e.waitState(id, "bob@dest.test", queue.StateDeferred)

	data, err := os.ReadFile(filepath.Join(e.dir, "data", "spool.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{marker, "confidential", "bob@dest.test"} {
		if bytes.Contains(data, []byte(s)) {
			t.Errorf("spool file contains %q in clear", s)
		}
	}
}

func TestAdminQueueAPI(t *testing.T) {
	e := newE2E(t, "")
	e.dns.SetServfail("dest.test")
	id := e.send("alice@org.test", []string{"bob@dest.test"}, message("admin", "body"))
	e.waitState(id, "bob@dest.test", queue.StateDeferred)

	c := gateway.NewAdminClient(e.gw.AdminAddr())
	msgs, err := c.List()
	if err != nil || len(msgs) != 1 || msgs[0].ID != id {
		t.Fatalf("List = %v, %v", msgs, err)
	}
	if err := c.Hold(id); err != nil {
		t.Fatal(err)
	}
	if m, _ := c.Get(id); m == nil || !m.Held {
		t.Errorf("after hold: %+v", m)
	}
	sink := e.destination("dest.test", "127.0.0.2", testutil.SinkOptions{})
	e.dns.ClearServfail("dest.test")
	if err := c.Release(id); err != nil {
		t.Fatal(err)
	}
	sink.WaitMessages(t, 1, 20*time.Second)
	e.waitState(id, "bob@dest.test", queue.StateDelivered)
	if _, err := c.Get("nonexistent"); err != queue.ErrNotFound {
		t.Errorf("Get(nonexistent) error = %v, want ErrNotFound", err)
	}
}

func lastAttempt(m *queue.Message) *queue.Attempt {
	for i := len(m.Events) - 1; i >= 0; i-- {
		if m.Events[i].Attempt != nil {
			return m.Events[i].Attempt
		}
	}
	return nil
}

// testWriter sends log lines to t.Log so they show only on failure.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestDeliveredMailIsDKIMSigned(t *testing.T) {
	dir := t.TempDir()
	records := map[string]string{}
	yaml := "dkim:\n  keys:\n"
	for _, algo := range []string{"rsa", "ed25519"} {
		key, pemKey, err := certs.GenerateDKIMKey(algo, 2048)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, algo+".pem")
		if err := certs.WriteDKIMKey(path, pemKey); err != nil {
			t.Fatal(err)
		}
		rec, _ := certs.DKIMRecord(key)
		records[algo+"._domainkey.org.test"] = rec
		yaml += fmt.Sprintf("    - {domain: org.test, selector: %s, key_file: %s}\n", algo, path)
	}
	e := newE2E(t, yaml)
	sink := e.destination("dest.test", "127.0.0.2", testutil.SinkOptions{TLS: true})
	e.send("alice@org.test", []string{"bob@dest.test", "carol@dest.test"}, message("signed", "Signed body."))
	e.send("mallory@unsigned.test", []string{"bob@dest.test"},
		"From: m@unsigned.test\r\nSubject: no key\r\n\r\nbody\r\n")

	msgs := sink.WaitMessages(t, 2, 20*time.Second)
	for _, m := range msgs {
		verifs, err := dkim.VerifyWithOptions(bytes.NewReader(m.Data), &dkim.VerifyOptions{
			LookupTXT: func(name string) ([]string, error) { return []string{records[name]}, nil },
		})
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(m.Data, []byte("Subject: no key")) {
			if len(verifs) != 0 {
				t.Errorf("mail from a domain without a key carries %d signatures", len(verifs))
			}
			continue
		}
		if len(verifs) != 2 {
			t.Fatalf("%d DKIM signatures on delivered mail, want 2", len(verifs))
		}
		for _, v := range verifs {
			if v.Err != nil || v.Domain != "org.test" {
				t.Errorf("signature %s: %v", v.Domain, v.Err)
			}
		}
		// And an independent verifier, on the bytes as the destination got them.
		verifyWithDkimpy(t, m.Data, records)
	}
}

// verifyWithDkimpy checks every DKIM signature of msg with dkimpy
// (python3-dkim), serving it the given DNS records.
func verifyWithDkimpy(t *testing.T, msg []byte, records map[string]string) {
	t.Helper()
	if err := exec.Command("/usr/bin/python3", "-c", "import dkim, nacl").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("python3-dkim / python3-nacl missing in CI: %v", err)
		}
		t.Log("python3-dkim not installed; independent verification skipped")
		return
	}
	path := filepath.Join(t.TempDir(), "delivered.eml")
	if err := os.WriteFile(path, msg, 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"../certs/testdata/dkimverify.py", path}
	for name, rec := range records {
		args = append(args, name+"="+rec)
	}
	out, err := exec.Command("/usr/bin/python3", args...).CombinedOutput()
	if err != nil {
		t.Errorf("dkimpy rejects the delivered message: %v\n%s", err, out)
	}
}

func TestForcedTLSNeverFallsBackToPlaintext(t *testing.T) {
	e := newE2E(t, "outbound:\n  tls_policy:\n    domains: {dest.test: verify}\n")
	sink := e.destination("dest.test", "127.0.0.2", testutil.SinkOptions{}) // no STARTTLS
	id := e.send("alice@org.test", []string{"bob@dest.test"}, message("forced", "Confidential."))
	m := e.waitState(id, "bob@dest.test", queue.StateDeferred)
	if r := m.Recipients[0]; r.Status != "4.7.5" || !strings.Contains(r.LastError, "required by tls_policy verify (dest.test)") {
		t.Errorf("deferral %+v", r)
	}
	if att := lastAttempt(m); att == nil || att.TLSLevel != "verify" || att.TLSRequiredBy != "tls_policy verify (dest.test)" {
		t.Errorf("attempt record %+v", att)
	}
	time.Sleep(300 * time.Millisecond) // a few retries
	if n := len(sink.Messages()); n != 0 {
		t.Errorf("%d messages delivered in plaintext to a verify-only domain", n)
	}
}

func TestRequireTLSBouncesWithReason(t *testing.T) {
	e := newE2E(t, "")
	e.destination("dest.test", "127.0.0.2", testutil.SinkOptions{TLS: true, CA: e.ca}) // verified, no REQUIRETLS
	senderBox := e.destination("org.test", "127.0.0.3", testutil.SinkOptions{})

	cl, err := smtp.DialStartTLS(e.gw.SMTPAddr(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.Mail("alice@org.test", &smtp.MailOptions{RequireTLS: true}); err != nil {
		t.Fatalf("MAIL FROM … REQUIRETLS: %v", err)
	}
	if err := cl.Rcpt("bob@dest.test", nil); err != nil {
		t.Fatal(err)
	}
	w, _ := cl.Data()
	w.Write([]byte(message("rtls", "Only over TLS.")))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	dsn := senderBox.WaitMessages(t, 1, 20*time.Second)[0]
	for _, want := range []string{"Status: 5.7.30", "REQUIRETLS support required"} {
		if !bytes.Contains(dsn.Data, []byte(want)) {
			t.Errorf("DSN lacks %q:\n%s", want, dsn.Data)
		}
	}
}

// TestStrippedSTARTTLSDefers: after a domain has taken mail over
// verified TLS, a host that shows up without STARTTLS (an attacker in the
// path, a stripped EHLO) never gets mail: the TLS history raises the
// level, and the next message goes to the genuine host over TLS.
func TestStrippedSTARTTLSDefers(t *testing.T) {
	e := newE2E(t, "")
	genuine := e.destination("dest.test", "127.0.0.2", testutil.SinkOptions{TLS: true, CA: e.ca})
	id := e.send("alice@org.test", []string{"bob@dest.test"}, message("first", "over TLS"))
	e.waitState(id, "bob@dest.test", queue.StateDelivered)
	if d, _ := e.gw.Store().DomainInfo("dest.test"); d == nil || !d.TLSSeen || !d.Verified {
		t.Fatalf("history after a verified delivery: %+v", d)
	}

	// A better-preference MX without STARTTLS appears.
	e.dns.AddMX("dest.test", "evil.dest.test", 1)
	e.dns.AddA("evil.dest.test", "127.0.0.6")
	evil := testutil.NewSMTPSink(t, testutil.SinkOptions{ListenAddr: fmt.Sprintf("127.0.0.6:%d", e.port), Hostname: "evil.dest.test"})

	id = e.send("alice@org.test", []string{"bob@dest.test"}, message("second", "still secret"))
	m := e.waitState(id, "bob@dest.test", queue.StateDelivered)
	if n := len(evil.Messages()); n != 0 {
		t.Fatalf("the stripping host got %d messages", n)
	}
	if n := len(genuine.Messages()); n != 2 {
		t.Errorf("genuine host got %d messages, want 2", n)
	}
	att := lastAttempt(m)
	if att == nil || att.TLSLevel != "verify" || !strings.Contains(att.TLSRequiredBy, "domain history (verified TLS seen since") {
		t.Errorf("attempt record %+v", att)
	}
}

// mtastsHost serves an MTA-STS policy for domain over HTTPS on 127.0.0.7
// with a certificate from the test CA, and publishes its DNS records.
func mtastsHost(t *testing.T, dns *testutil.DNSServer, ca *testutil.CA, domain, body string) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/mta-sts.txt" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte(body))
	}))
	l, err := net.Listen("tcp", "127.0.0.7:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener.Close()
	srv.Listener = l
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "mta-sts."+domain)}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	dns.AddA("mta-sts."+domain, "127.0.0.7")
	dns.AddTXT("_mta-sts."+domain, "v=STSv1; id=1;")
	return srv
}

func TestMTASTSEnforceAndCache(t *testing.T) {
	dns := testutil.NewDNSServer(t)
	ca := testutil.NewCA(t)
	sts := mtastsHost(t, dns, ca, "dest.test", "version: STSv1\nmode: enforce\nmx: mx.dest.test\nmax_age: 86400\n")
	port := sts.Listener.Addr().(*net.TCPAddr).Port
	e := newE2EWith(t, dns, ca, fmt.Sprintf("outbound: {mta_sts_port: %d}\n", port))

	genuine := e.destination("dest.test", "127.0.0.2", testutil.SinkOptions{TLS: true, CA: e.ca})
	// A host not named by the policy, with a perfectly valid certificate
	// and a better preference: MTA-STS must keep mail away from it.
	e.dns.AddMX("dest.test", "evil.dest.test", 1)
	e.dns.AddA("evil.dest.test", "127.0.0.6")
	evil := testutil.NewSMTPSink(t, testutil.SinkOptions{ListenAddr: fmt.Sprintf("127.0.0.6:%d", e.port),
		Hostname: "evil.dest.test", TLS: true, CA: e.ca})

	id := e.send("alice@org.test", []string{"bob@dest.test"}, message("sts1", "enforced"))
	m := e.waitState(id, "bob@dest.test", queue.StateDelivered)
	att := lastAttempt(m)
	if att.MXHost != "mx.dest.test" || att.MTASTS != "enforce: ok" || !strings.Contains(att.TLSRequiredBy, "MTA-STS enforce") || att.TLSLevel != "verify" {
		t.Errorf("attempt %+v", att)
	}
	if cached, _ := e.gw.Store().MTASTS("dest.test"); cached == nil || cached.ID != "1" {
		t.Fatalf("policy not cached: %+v", cached)
	}

	// The policy host goes away and the record changes: the cached enforce
	// policy keeps applying.
	sts.Close()
	e.dns.ReplaceTXT("_mta-sts.dest.test", "v=STSv1; id=2;")
	id = e.send("alice@org.test", []string{"bob@dest.test"}, message("sts2", "still enforced"))
	m = e.waitState(id, "bob@dest.test", queue.StateDelivered)
	if att := lastAttempt(m); att.MXHost != "mx.dest.test" || att.MTASTS != "enforce: ok" {
		t.Errorf("with the policy host down: %+v", att)
	}
	if len(evil.Messages()) != 0 || len(genuine.Messages()) != 2 {
		t.Errorf("evil got %d, genuine %d", len(evil.Messages()), len(genuine.Messages()))
	}
}

func TestMTASTSTestingModeRecordsOnly(t *testing.T) {
	dns := testutil.NewDNSServer(t)
	ca := testutil.NewCA(t)
	sts := mtastsHost(t, dns, ca, "dest.test", "version: STSv1\nmode: testing\nmx: mx.dest.test\nmax_age: 86400\n")
	e := newE2EWith(t, dns, ca, fmt.Sprintf("outbound: {mta_sts_port: %d}\n", sts.Listener.Addr().(*net.TCPAddr).Port))
	e.dns.AddMX("dest.test", "other.dest.test", 10)
	e.dns.AddA("other.dest.test", "127.0.0.2")
	testutil.NewSMTPSink(t, testutil.SinkOptions{ListenAddr: fmt.Sprintf("127.0.0.2:%d", e.port), Hostname: "other.dest.test"})

	id := e.send("alice@org.test", []string{"bob@dest.test"}, message("ststest", "testing"))
	m := e.waitState(id, "bob@dest.test", queue.StateDelivered)
	if att := lastAttempt(m); att.MTASTS != "testing: would fail (other.dest.test not in policy, no TLS)" {
		t.Errorf("testing mode record %q", att.MTASTS)
	}
}

// mergeYAML lets a test's extra YAML (appended after the base config)
// override keys of the base, as a second file would: later mappings are
// merged into earlier ones key by key.
func mergeYAML(t *testing.T, doc string) []byte {
	t.Helper()
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &root); err != nil {
		t.Fatal(err)
	}
	var merge func(n *yaml.Node) *yaml.Node
	merge = func(n *yaml.Node) *yaml.Node {
		if n.Kind != yaml.MappingNode {
			return n
		}
		out := &yaml.Node{Kind: yaml.MappingNode}
		index := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], merge(n.Content[i+1])
			if j, ok := index[k.Value]; ok && v.Kind == yaml.MappingNode && out.Content[j+1].Kind == yaml.MappingNode {
				combined := &yaml.Node{Kind: yaml.MappingNode, Content: append(append([]*yaml.Node{}, out.Content[j+1].Content...), v.Content...)}
				out.Content[j+1] = merge(combined)
				continue
			} else if ok {
				out.Content[j+1] = v
				continue
			}
			index[k.Value] = len(out.Content)
			out.Content = append(out.Content, k, v)
		}
		return out
	}
	out, err := yaml.Marshal(merge(root.Content[0]))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestTLSHistoryDefersUntilTLSIsBack: a domain delivered over TLS whose
// server then stops offering STARTTLS gets no plaintext: the message
// defers, and goes out once TLS is back.
func TestTLSHistoryDefersUntilTLSIsBack(t *testing.T) {
	e := newE2E(t, "outbound: {idle_conn_timeout: 1ms}\n") // every message dials anew
	withTLS := e.destination("dest.test", "127.0.0.2", testutil.SinkOptions{TLS: true, CA: e.ca})
	id := e.send("alice@org.test", []string{"bob@dest.test"}, message("tls1", "first"))
	e.waitState(id, "bob@dest.test", queue.StateDelivered)

	// The MX now answers from a server without STARTTLS.
	plain := testutil.NewSMTPSink(t, testutil.SinkOptions{ListenAddr: fmt.Sprintf("127.0.0.8:%d", e.port), Hostname: "mx.dest.test"})
	e.dns.ReplaceA("mx.dest.test", "127.0.0.8")
	id = e.send("alice@org.test", []string{"bob@dest.test"}, message("tls2", "second"))
	m := e.waitState(id, "bob@dest.test", queue.StateDeferred)
	if r := m.Recipients[0]; r.Status != "4.7.5" || !strings.Contains(r.LastError, "domain history") {
		t.Errorf("deferral %+v", r)
	}
	time.Sleep(300 * time.Millisecond) // retries happen meanwhile
	if n := len(plain.Messages()); n != 0 {
		t.Fatalf("%d messages went out in plaintext", n)
	}

	// TLS is back: the deferred message goes out over it.
	e.dns.ReplaceA("mx.dest.test", "127.0.0.2")
	e.waitState(id, "bob@dest.test", queue.StateDelivered)
	if n := len(withTLS.Messages()); n != 2 {
		t.Errorf("TLS destination got %d messages, want 2", n)
	}
}

func TestRequireTLSDeliveredEndToEnd(t *testing.T) {
	e := newE2E(t, "")
	sink := e.destination("dest.test", "127.0.0.2", testutil.SinkOptions{TLS: true, CA: e.ca, REQUIRETLS: true})
	cl, err := smtp.DialStartTLS(e.gw.SMTPAddr(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.Mail("alice@org.test", &smtp.MailOptions{RequireTLS: true}); err != nil {
		t.Fatal(err)
	}
	cl.Rcpt("bob@dest.test", nil)
	w, _ := cl.Data()
	w.Write([]byte(message("rtls-ok", "Only over TLS.")))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got := sink.WaitMessages(t, 1, 20*time.Second)[0]
	if !got.RequireTLS || got.TLS == "" {
		t.Errorf("REQUIRETLS message arrived with REQUIRETLS=%v over %q", got.RequireTLS, got.TLS)
	}
}

func TestMTASTSFetchFailureWithoutCache(t *testing.T) {
	dns := testutil.NewDNSServer(t)
	ca := testutil.NewCA(t)
	// The record says there is a policy, but its host does not answer.
	dns.AddTXT("_mta-sts.dest.test", "v=STSv1; id=1;")
	dns.AddA("mta-sts.dest.test", "127.0.0.7")
	e := newE2EWith(t, dns, ca, fmt.Sprintf("outbound: {mta_sts_port: %d}\n", testutil.FreePort(t)))
	e.destination("dest.test", "127.0.0.2", testutil.SinkOptions{})
	id := e.send("alice@org.test", []string{"bob@dest.test"}, message("nocache", "body"))
	m := e.waitState(id, "bob@dest.test", queue.StateDelivered)
	if att := lastAttempt(m); att.MTASTS != "" || att.TLSLevel != "may" {
		t.Errorf("without a usable or cached policy delivery is opportunistic: %+v", att)
	}
}
