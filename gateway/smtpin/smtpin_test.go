package smtpin

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/internal/mailtext"
	"github.com/sealgate/sealgate/policy"
	"github.com/sealgate/sealgate/queue"
)

// fakeSpool records what the inbound side commits.
type fakeSpool struct {
	mu     sync.Mutex
	envs   []queue.Envelope
	bodies [][]byte
	fail   error
}

func (f *fakeSpool) Enqueue(_ context.Context, env queue.Envelope, body []byte) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return "", f.fail
	}
	f.envs = append(f.envs, env)
	f.bodies = append(f.bodies, body)
	return fmt.Sprintf("Q%04d", len(f.envs)), nil
}

func (f *fakeSpool) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.envs)
}

// inboundFixture is an inbound server on 127.0.0.1 with a fake spool.
type inboundFixture struct {
	addr, tlsAddr string
	spool         *fakeSpool
	srv           *Server
}

func testInboundConfig(t testing.TB) config.Inbound {
	t.Helper()
	c, err := config.Default()
	if err != nil {
		t.Fatal(err)
	}
	return c.Inbound
}

func startInbound(t testing.TB, cfg config.Inbound, loopbackIsRemote bool) *inboundFixture {
	t.Helper()
	return startInboundWith(t, cfg, func(o *Options) { o.loopbackIsRemote = loopbackIsRemote })
}

// startInboundWith is startInbound with a hook to change the options.
func startInboundWith(t testing.TB, cfg config.Inbound, change func(*Options)) *inboundFixture {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := certs.EnsureSelfSigned(certFile, keyFile, []string{"gw.test"}); err != nil {
		t.Fatal(err)
	}
	r, err := certs.NewCertReloader(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	f := &inboundFixture{spool: &fakeSpool{}}
	// The default policy runs too, as in the live gateway.
	defaults, err := config.Default()
	if err != nil {
		t.Fatal(err)
	}
	engine, err := policy.Compile(defaults.Policy)
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{
		Config: cfg, Hostname: "gw.test", TLSConfig: certs.ServerTLSConfig(r), Spool: f.spool,
		Logger: slog.New(slog.DiscardHandler), Policy: func() *policy.Engine { return engine },
	}
	change(&opts)
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lt, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr, f.tlsAddr, f.srv = l.Addr().String(), lt.Addr().String(), srv
	go srv.Serve(l)
	go srv.ServeImplicitTLS(lt)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return f
}

// smtpClient speaks raw SMTP so tests read as transcripts.
type smtpClient struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialSMTP(t *testing.T, addr string) *smtpClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return newSMTPClient(t, conn)
}

func dialSMTPS(t *testing.T, addr string) *smtpClient {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	return newSMTPClient(t, conn)
}

// newSMTPClient reads the greeting on conn and closes conn with the test.
func newSMTPClient(t *testing.T, conn net.Conn) *smtpClient {
	t.Helper()
	t.Cleanup(func() { conn.Close() })
	c := &smtpClient{t: t, conn: conn, r: bufio.NewReader(conn)}
	c.expect("220 ")
	return c
}

// reply reads one (possibly multi-line) reply and returns its lines.
func (c *smtpClient) reply() []string {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var lines []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("reading reply: %v (so far %q)", err, lines)
		}
		line = strings.TrimRight(line, "\r\n")
		lines = append(lines, line)
		if len(line) < 4 || line[3] != '-' {
			return lines
		}
	}
}

// expect reads a reply whose last line starts with prefix.
func (c *smtpClient) expect(prefix string) []string {
	c.t.Helper()
	lines := c.reply()
	if !strings.HasPrefix(lines[len(lines)-1], prefix) {
		c.t.Fatalf("reply %q, want %q…", lines, prefix)
	}
	return lines
}

func (c *smtpClient) send(s string) {
	c.t.Helper()
	if _, err := c.conn.Write([]byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

// cmd sends one command line and checks the reply.
func (c *smtpClient) cmd(line, want string) []string {
	c.t.Helper()
	c.send(line + "\r\n")
	return c.expect(want)
}

func (c *smtpClient) startTLS() {
	c.t.Helper()
	c.cmd("STARTTLS", "220 ")
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
}

// testHash is a bcrypt hash at the lowest cost, to keep tests quick.
func testHash(t *testing.T, pw string) string {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func hasLine(lines []string, s string) bool {
	for _, l := range lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

func TestInboundCapabilities(t *testing.T) {
	cfg := testInboundConfig(t)
	hash := testHash(t, "pw")
	cfg.Auth.Users = []config.User{{Username: "alice", PasswordHash: hash}}
	f := startInbound(t, cfg, false)

	c := dialSMTP(t, f.addr)
	caps := c.cmd("EHLO client.test", "250 ")
	for _, want := range []string{"PIPELINING", "8BITMIME", "SMTPUTF8", "SIZE 52428800", "ENHANCEDSTATUSCODES", "STARTTLS"} {
		if !hasLine(caps, want) {
			t.Errorf("EHLO lacks %s: %q", want, caps)
		}
	}
	if hasLine(caps, "AUTH") || hasLine(caps, "REQUIRETLS") {
		t.Errorf("AUTH/REQUIRETLS offered before TLS: %q", caps)
	}
	c.cmd("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00alice\x00pw")), "523 5.7.10")

	c.startTLS()
	caps = c.cmd("EHLO client.test", "250 ")
	if hasLine(caps, "STARTTLS") || !hasLine(caps, "AUTH PLAIN LOGIN") || !hasLine(caps, "REQUIRETLS") {
		t.Errorf("EHLO after STARTTLS: %q", caps)
	}

	s := dialSMTPS(t, f.tlsAddr)
	caps = s.cmd("EHLO client.test", "250 ")
	if hasLine(caps, "STARTTLS") || !hasLine(caps, "AUTH PLAIN LOGIN") {
		t.Errorf("EHLO on implicit TLS: %q", caps)
	}
}

func TestInboundAuthAfterTLS(t *testing.T) {
	cfg := testInboundConfig(t)
	cfg.TrustedNetworks = []string{"10.0.0.0/8"} // loopback is not trusted here
	hash := testHash(t, "s3cret")
	cfg.Auth.Users = []config.User{{Username: "alice", PasswordHash: hash}}
	f := startInbound(t, cfg, false)

	c := dialSMTP(t, f.addr)
	c.cmd("EHLO client.test", "250 ")
	c.startTLS()
	c.cmd("EHLO client.test", "250 ")
	c.cmd("MAIL FROM:<a@org.test>", "250 ")
	c.cmd("RCPT TO:<b@dest.test>", "550 5.7.1 Relaying denied")
	c.cmd("RSET", "250 ")
	c.cmd("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00alice\x00wrong")), "535 5.7.8")
	c.cmd("AUTH LOGIN", "334 ")
	c.cmd(base64.StdEncoding.EncodeToString([]byte("alice")), "334 ")
	c.cmd(base64.StdEncoding.EncodeToString([]byte("s3cret")), "235 2.0.0")
	c.cmd("MAIL FROM:<a@org.test>", "250 ")
	c.cmd("RCPT TO:<b@dest.test>", "250 ")
	c.cmd("DATA", "354 ")
	c.send("Subject: hi\r\n\r\nbody\r\n.\r\n")
	c.expect("250 2.0.0 Ok: queued as Q0001")
	if env := f.spool.envs[0]; env.AuthUser != "alice" || !strings.HasPrefix(env.TLS, "TLS1.3") {
		t.Errorf("envelope %+v", env)
	}
	if !strings.Contains(string(f.spool.bodies[0]), "with ESMTPSA") {
		t.Errorf("Received header does not record TLS+AUTH:\n%s", f.spool.bodies[0])
	}
}

func TestInboundAuthFailuresCloseSession(t *testing.T) {
	cfg := testInboundConfig(t)
	hash := testHash(t, "s3cret")
	cfg.Auth.Users = []config.User{{Username: "alice", PasswordHash: hash}}
	f := startInbound(t, cfg, false)
	c := dialSMTPS(t, f.tlsAddr)
	c.cmd("EHLO client.test", "250 ")
	bad := "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00nobody\x00guess"))
	c.cmd(bad, "535 5.7.8")
	c.cmd(bad, "535 5.7.8")
	c.cmd(bad, "421 4.7.0")
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.r.ReadString('\n'); err == nil {
		t.Error("connection still open after three failed AUTH attempts")
	}
}

func TestInboundRelayAndTLSRules(t *testing.T) {
	cfg := testInboundConfig(t)
	cfg.TrustedNetworks = []string{"10.0.0.0/8"}
	f := startInbound(t, cfg, false)
	c := dialSMTP(t, f.addr)
	c.cmd("EHLO client.test", "250 ")
	c.cmd("MAIL FROM:<a@org.test>", "250 ")
	c.cmd("RCPT TO:<b@dest.test>", "550 5.7.1")

	// require_tls applies to clients outside loopback.
	cfg = testInboundConfig(t)
	f = startInbound(t, cfg, true)
	c = dialSMTP(t, f.addr)
	c.cmd("EHLO client.test", "250 ")
	c.cmd("MAIL FROM:<a@org.test>", "530 5.7.0 Must issue a STARTTLS command first")
	c.startTLS()
	c.cmd("EHLO client.test", "250 ")
	c.cmd("MAIL FROM:<a@org.test>", "250 ")
	c.cmd("RCPT TO:<nodomain>", "501 5.")
	c.cmd("RCPT TO:<b@dest.test>", "250 ")

	// REQUIRETLS only over TLS (RFC 8689), even from loopback.
	c = dialSMTP(t, startInbound(t, testInboundConfig(t), false).addr)
	c.cmd("EHLO client.test", "250 ")
	c.cmd("MAIL FROM:<a@org.test> REQUIRETLS", "530 5.7.10")
}

func TestInboundSmugglingDefence(t *testing.T) {
	for _, tc := range []struct{ name, data string }{
		{"bare LF end-of-data", "Subject: a\r\n\r\nhello\n.\nMAIL FROM:<evil@org.test>\r\n.\r\n"},
		{"bare LF in header", "Subject: a\nX: b\r\n\r\nhello\r\n.\r\n"},
		{"bare CR", "Subject: a\r\n\r\nhello\r.\rworld\r\n.\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startInbound(t, testInboundConfig(t), false)
			c := dialSMTP(t, f.addr)
			c.cmd("EHLO client.test", "250 ")
			c.cmd("MAIL FROM:<a@org.test>", "250 ")
			c.cmd("RCPT TO:<b@dest.test>", "250 ")
			c.cmd("DATA", "354 ")
			c.send(tc.data)
			c.expect("554 5.6.11")
			c.cmd("NOOP", "250 ")
			if n := f.spool.count(); n != 0 {
				t.Errorf("%d messages spooled, want 0", n)
			}
		})
	}

	cfg := testInboundConfig(t)
	cfg.BareLineEndings = "normalize"
	f := startInbound(t, cfg, false)
	c := dialSMTP(t, f.addr)
	c.cmd("EHLO client.test", "250 ")
	c.cmd("MAIL FROM:<a@org.test>", "250 ")
	c.cmd("RCPT TO:<b@dest.test>", "250 ")
	c.cmd("DATA", "354 ")
	c.send("Subject: a\r\n\r\nline1\nline2\r\n.\r\n")
	c.expect("250 ")
	if body := string(f.spool.bodies[0]); !strings.HasSuffix(body, "\r\n\r\nline1\r\nline2\r\n") || mailtext.HasBareLineEnding([]byte(body)) {
		t.Errorf("normalized body %q", body)
	}
}

func TestInboundReceivedHeaderAndHops(t *testing.T) {
	f := startInbound(t, testInboundConfig(t), false)
	c := dialSMTP(t, f.addr)
	c.cmd("EHLO client.test", "250 ")
	c.startTLS()
	c.cmd("EHLO client.test", "250 ")
	c.cmd("MAIL FROM:<a@org.test>", "250 ")
	c.cmd("RCPT TO:<b@dest.test>", "250 ")
	c.cmd("DATA", "354 ")
	c.send("Subject: a\r\n\r\nbody\r\n.\r\n")
	c.expect("250 2.0.0 Ok: queued as Q0001")
	body := string(f.spool.bodies[0])
	for _, want := range []string{"Received: from client.test ([127.0.0.1])", "by gw.test (sealgate) with ESMTPS",
		"(version=TLS1.3 cipher=TLS_", "for <b@dest.test>;", "\r\nSubject: a\r\n\r\nbody\r\n"} {
		if !strings.Contains(body, want) {
			t.Errorf("spooled message lacks %q:\n%s", want, body)
		}
	}

	c.cmd("MAIL FROM:<a@org.test>", "250 ")
	c.cmd("RCPT TO:<b@dest.test>", "250 ")
	c.cmd("DATA", "354 ")
	c.send(strings.Repeat("Received: from x by y; Mon, 1 Jan 2026 00:00:00 +0000\r\n", maxHops+1) + "\r\nloop\r\n.\r\n")
	c.expect("554 5.4.6")
}

func TestInboundEmptyMessage(t *testing.T) {
	f := startInbound(t, testInboundConfig(t), false)
	c := dialSMTP(t, f.addr)
	c.cmd("EHLO client.test", "250 ")
	c.cmd("MAIL FROM:<a@org.test>", "250 ")
	c.cmd("RCPT TO:<b@dest.test>", "250 ")
	c.cmd("DATA", "354 ")
	c.send(".\r\n")
	c.expect("250 ")
	if body := string(f.spool.bodies[0]); !strings.HasPrefix(body, "Received: ") || !strings.HasSuffix(body, "\r\n") {
		t.Errorf("empty message spooled as %q", body)
	}
}

func TestInboundSpoolFailureHidesDetails(t *testing.T) {
	f := startInbound(t, testInboundConfig(t), false)
	f.spool.fail = errors.New("bbolt: /secret/path/spool.db: disk full")
	c := dialSMTP(t, f.addr)
	c.cmd("EHLO client.test", "250 ")
	c.cmd("MAIL FROM:<a@org.test>", "250 ")
	c.cmd("RCPT TO:<b@dest.test>", "250 ")
	c.cmd("DATA", "354 ")
	c.send("Subject: a\r\n\r\nbody\r\n.\r\n")
	lines := c.expect("451 4.3.0")
	if hasLine(lines, "secret") || hasLine(lines, "disk") {
		t.Errorf("internal error text reached the client: %q", lines)
	}
}

func (s *Server) isDraining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}
