package smtpin

import (
	"bufio"
	"context"
	"encoding/base64"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/config"
)

func TestInboundLimits(t *testing.T) {
	cfg := testInboundConfig(t)
	cfg.MaxMessageBytes = 1000
	cfg.MaxRecipients = 2
	f := startInbound(t, cfg, false)
	c := dialSMTP(t, f.addr)
	c.cmd("EHLO client.test", "250 ")
	c.cmd("MAIL FROM:<a@org.test> SIZE=5000", "552 5.3.4")
	c.cmd("MAIL FROM:<a@org.test>", "250 ")
	c.cmd("RCPT TO:<b1@dest.test>", "250 ")
	c.cmd("RCPT TO:<b2@dest.test>", "250 ")
	c.cmd("RCPT TO:<b3@dest.test>", "452 4.5.3")
	c.cmd("DATA", "354 ")
	c.send("Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("x", 70)+"\r\n", 30) + ".\r\n")
	c.expect("552 5.3.4")
	c.cmd("NOOP", "250 ") // the session is still in step
	if n := f.spool.count(); n != 0 {
		t.Errorf("%d messages spooled, want 0", n)
	}
}

func TestInboundConnectionLimits(t *testing.T) {
	cfg := testInboundConfig(t)
	cfg.MaxConnectionsPerIP = 2
	f := startInbound(t, cfg, false)
	c1 := dialSMTP(t, f.addr)
	dialSMTP(t, f.addr)
	conn, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, _ := bufio.NewReader(conn).ReadString('\n')
	if !strings.HasPrefix(line, "421 4.7.0") {
		t.Errorf("third connection from one address got %q, want 421 4.7.0", line)
	}
	// A slot frees when a session ends.
	c1.cmd("QUIT", "221 ")
	c1.conn.Close()
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if strings.HasPrefix(line, "220 ") {
			break
		}
		if i == 500 {
			t.Fatalf("slot never freed: %q", line)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestInboundIdleTimeout(t *testing.T) {
	cfg := testInboundConfig(t)
	cfg.IdleTimeout = config.Duration(200 * time.Millisecond)
	f := startInbound(t, cfg, false)
	c := dialSMTP(t, f.addr)
	c.cmd("EHLO client.test", "250 ")
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	for {
		if _, err := c.r.ReadString('\n'); err != nil {
			break // the server hung up on the idle client
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("idle client never disconnected")
		}
	}
	if time.Since(start) >= 10*time.Second {
		t.Error("idle client kept until the test's own deadline")
	}
}

// TestInboundShutdownIsBounded: a client stalled in the middle of DATA
// cannot hold a stop past its deadline, and loses its connection.
func TestInboundShutdownIsBounded(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	certs.EnsureSelfSigned(certFile, keyFile, []string{"gw.test"})
	r, _ := certs.NewCertReloader(certFile, keyFile)
	srv, err := New(Options{Config: testInboundConfig(t), Hostname: "gw.test",
		TLSConfig: certs.ServerTLSConfig(r), Spool: &fakeSpool{}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(l)
	c := dialSMTP(t, l.Addr().String())
	c.cmd("EHLO client.test", "250 ")
	c.cmd("MAIL FROM:<a@org.test>", "250 ")
	c.cmd("RCPT TO:<b@dest.test>", "250 ")
	c.cmd("DATA", "354 ")
	c.send("Subject: half a message\r\n") // and then nothing

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(ctx) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return after its deadline")
	}
	// A 421 or similar is fine; then the server must close the
	// connection. A read that times out means it is still open.
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var readErr error
	for lines := 0; readErr == nil && lines < 10; lines++ {
		_, readErr = c.r.ReadString('\n')
	}
	if ne, ok := readErr.(net.Error); readErr == nil || ok && ne.Timeout() {
		t.Errorf("the stalled client's connection is still open (read: %v)", readErr)
	}
}

// TestReconfigureAppliesToTheNextConnection: a reload (SIGHUP) puts new
// limits, trusted networks and users in force for the next connection;
// a session already open finishes under the settings it started with;
// what cannot change while running is named.
func TestReconfigureAppliesToTheNextConnection(t *testing.T) {
	cfg := testInboundConfig(t)
	cfg.MaxRecipients = 2
	f := startInbound(t, cfg, false)
	before := dialSMTP(t, f.addr)
	before.cmd("EHLO client.test", "250 ")
	before.startTLS()
	before.cmd("EHLO client.test", "250 ")

	next := cfg
	next.MaxRecipients = 1
	next.TrustedNetworks = nil // loopback no longer relays without AUTH
	next.Auth.Users = []config.User{{Username: "alice", PasswordHash: testHash(t, "s3cret")}}
	next.Listen = "127.0.0.1:2526"
	restart := f.srv.Reconfigure(next)
	if len(restart) != 1 || restart[0] != "inbound.listen" {
		t.Errorf("needs a restart: %v, want inbound.listen only", restart)
	}

	// The open session: still trusted, still two recipients.
	before.cmd("MAIL FROM:<a@org.test>", "250 ")
	before.cmd("RCPT TO:<b1@dest.test>", "250 ")
	before.cmd("RCPT TO:<b2@dest.test>", "250 ")

	// The next one: no relay without AUTH, then alice, then one recipient.
	c := dialSMTP(t, f.addr)
	c.cmd("EHLO client.test", "250 ")
	c.startTLS()
	c.cmd("EHLO client.test", "250 ")
	c.cmd("MAIL FROM:<a@org.test>", "250 ")
	c.cmd("RCPT TO:<b1@dest.test>", "550 5.7.1")
	c.cmd("RSET", "250 ")
	c.cmd("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00alice\x00s3cret")), "235 ")
	c.cmd("MAIL FROM:<a@org.test>", "250 ")
	c.cmd("RCPT TO:<b1@dest.test>", "250 ")
	c.cmd("RCPT TO:<b2@dest.test>", "452 4.5.3")
}
