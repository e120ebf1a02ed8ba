package gateway_test

// End-to-end tests of outbound trust: DKIM, TLS levels, REQUIRETLS,
// MTA-STS and the TLS history of destinations.

import (
	"bytes"
	"crypto/tls"
	"fmt"
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

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/internal/testutil"
	"github.com/sealgate/sealgate/queue"
)

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
	// A body over the spool's inline limit is kept in a sealed file and
	// streamed: signed as it passes, sent without being loaded whole.
	big := message("big signed", strings.Repeat("A line of a large attachment, 8-bit: \xc3\xa9t\xc3\xa9.\r\n", 30000))
	e.send("alice@org.test", []string{"dave@dest.test"}, big)

	msgs := sink.WaitMessages(t, 3, 20*time.Second)
	for _, m := range msgs {
		if bytes.Contains(m.Data, []byte("Subject: big signed")) {
			_, rest, _ := bytes.Cut(m.Data, []byte("\r\nFrom: "))
			if !strings.HasSuffix(big, string(rest)) || len(rest) < len(big)-200 {
				t.Errorf("the large message arrived changed (%d bytes after the signatures, sent %d)", len(rest), len(big))
			}
		}
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
	m = e.waitAttempts(id, "bob@dest.test", 3) // each attempt reached the sink and refused it
	if n := len(sink.Messages()); n != 0 || m.Recipients[0].State != queue.StateDeferred {
		t.Errorf("%d messages delivered in plaintext to a verify-only domain (%s)", n, m.Recipients[0].State)
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
	m = e.waitAttempts(id, "bob@dest.test", 3)
	if n := len(plain.Messages()); n != 0 || m.Recipients[0].State != queue.StateDeferred {
		t.Fatalf("%d messages went out in plaintext (%s)", n, m.Recipients[0].State)
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

// TestReloadKeysSignsTheNextMessage: a DKIM key added to the config and
// reloaded (SIGHUP) signs the next message, with no restart.
func TestReloadKeysSignsTheNextMessage(t *testing.T) {
	e := newE2E(t, "")
	sink := e.destination("dest.test", "127.0.0.2", testutil.SinkOptions{TLS: true, CA: e.ca})
	id := e.send("alice@org.test", []string{"bob@dest.test"}, message("before", "x"))
	e.waitState(id, "bob@dest.test", queue.StateDelivered)
	if bytes.Contains(sink.Messages()[0].Data, []byte("DKIM-Signature:")) {
		t.Fatal("signed without a key")
	}
	_, pemKey, err := certs.GenerateDKIMKey("ed25519", 0)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "dkim.pem")
	if err := certs.WriteDKIMKey(keyFile, pemKey); err != nil {
		t.Fatal(err)
	}
	cfg := *e.gw.Config()
	cfg.DKIM.Keys = []config.DKIMKey{{Domain: "org.test", Selector: "rotated", KeyFile: keyFile}}
	if err := e.gw.ReloadKeys(&cfg); err != nil {
		t.Fatal(err)
	}
	id = e.send("alice@org.test", []string{"bob@dest.test"}, message("after", "x"))
	e.waitState(id, "bob@dest.test", queue.StateDelivered)
	if got := sink.Messages()[1].Data; !bytes.Contains(got, []byte("s=rotated")) {
		t.Errorf("the message after the reload is not signed with the new key:\n%s", got)
	}
	bad := cfg
	bad.DKIM.Keys = []config.DKIMKey{{Domain: "org.test", Selector: "x", KeyFile: filepath.Join(t.TempDir(), "missing.pem")}}
	if err := e.gw.ReloadKeys(&bad); err == nil {
		t.Error("a missing key file was accepted")
	}
	id = e.send("alice@org.test", []string{"bob@dest.test"}, message("still", "x"))
	e.waitState(id, "bob@dest.test", queue.StateDelivered)
	if got := sink.Messages()[2].Data; !bytes.Contains(got, []byte("s=rotated")) {
		t.Error("a refused reload dropped the running key")
	}
}
