package gateway_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"go.yaml.in/yaml/v3"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/gateway"
	"github.com/sealgate/sealgate/gateway/admin"
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
	return newE2EPort(t, dns, ca, testutil.FreePort(t), extra)
}

// newE2EPort is newE2EWith with the destinations' SMTP port given: a
// second node of a fleet reaches the same sinks as the first.
func newE2EPort(t *testing.T, dns *testutil.DNSServer, ca *testutil.CA, port int, extra string) *e2e {
	t.Helper()
	e := &e2e{t: t, dns: dns, ca: ca, dir: t.TempDir()}
	e.port = port
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
  allowed_private_networks: [127.0.0.0/8] # the sinks
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
	opts.CA = e.ca
	return testutil.NewMX(e.t, e.dns, domain, "mx."+domain, ip, 10, e.port, opts)
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

// waitAttempts polls the spool until rcpt of id has had at least n
// recorded delivery attempts or is final, and returns the message. A test asserts a
// negative ("nothing went out in plaintext") after a known number of
// attempts, never after a sleep.
func (e *e2e) waitAttempts(id, rcpt string, n int) *queue.Message {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		m, err := e.gw.Store().Get(id)
		if err == nil {
			for _, r := range m.Recipients {
				if r.Address == rcpt && (r.Attempts >= n || r.State.Final()) {
					return m
				}
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s for %s never had %d attempts; last: %+v (err %v)", id, rcpt, n, m, err)
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
	// The queue ID in the Received header leads from a recipient's copy
	// to the record.
	for _, want := range []string{"Received: from client.test", "by gw.test", "TLS1.3", "\tid " + id + "\r\n"} {
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

	tok, err := admin.ReadToken(e.gw.Config().AdminTokenFile())
	if err != nil {
		t.Fatal(err)
	}
	c := admin.NewAdminClient(e.gw.AdminAddr(), tok)
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
