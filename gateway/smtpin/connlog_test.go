package smtpin

import (
	"crypto/tls"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
)

// waitLog waits until the log holds want (bounded).
func waitLog(t *testing.T, logs *syncBuffer, want string) string {
	t.Helper()
	for i := 0; i < 500; i++ {
		if s := logs.String(); strings.Contains(s, want) {
			return s
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("log never said %q:\n%s", want, logs.String())
	return ""
}

// TestConnectionsAndFailedHandshakesAreLogged: a connection gets a line
// when it comes and when it goes (duration, messages), and a failed TLS
// handshake — implicit or after STARTTLS — names the client, the highest
// protocol it offered, the name it asked for, and why.
func TestConnectionsAndFailedHandshakesAreLogged(t *testing.T) {
	logs := &syncBuffer{}
	f := startInboundWith(t, testInboundConfig(t), func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})

	c := dialSMTP(t, f.addr)
	c.toData()
	c.send("Subject: x\r\n\r\nx\r\n.\r\n")
	c.expect("250 ")
	c.cmd("QUIT", "221 ")
	out := waitLog(t, logs, "msg=disconnected")
	if !strings.Contains(out, "msg=connection client=127.0.0.1 listener=starttls") || !strings.Contains(out, "messages=1") {
		t.Errorf("connection lines:\n%s", out)
	}

	// Implicit TLS: a client that speaks plaintext to the TLS port.
	raw, err := net.Dial("tcp", f.tlsAddr)
	if err != nil {
		t.Fatal(err)
	}
	raw.Write([]byte("EHLO not-tls\r\n"))
	raw.Close()
	waitLog(t, logs, `listener=implicit-tls protocol="no ClientHello" err=`)

	// STARTTLS, then an offer no server may accept (TLS 1.0 only).
	s := dialSMTP(t, f.addr)
	s.cmd("EHLO client.test", "250 ")
	s.cmd("STARTTLS", "220 ")
	tc := tls.Client(s.conn, &tls.Config{ServerName: "relay.test", InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10})
	if tc.Handshake() == nil {
		t.Fatal("a TLS 1.0 handshake succeeded")
	}
	if out := waitLog(t, logs, "listener=starttls helo=client.test protocol=TLS1.0 sni=relay.test err="); !strings.Contains(out, "msg=\"TLS handshake failed\"") {
		t.Errorf("handshake failure line:\n%s", out)
	}

	// Implicit TLS, a client that offers TLS 1.1 and 1.0: the line names
	// the highest.
	ic, err := tls.Dial("tcp", f.tlsAddr, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
	if err == nil {
		ic.Close()
		t.Fatal("a TLS 1.1 handshake succeeded")
	}
	waitLog(t, logs, "listener=implicit-tls protocol=TLS1.1 err=")
}
