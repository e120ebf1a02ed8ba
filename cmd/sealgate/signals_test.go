package main

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/internal/testutil"
)

// TestSignalsReloadAndDrain runs the binary: /healthz and /readyz answer,
// SIGHUP with a broken config keeps the server running, SIGHUP after a
// certificate change serves the new certificate, and SIGTERM stops it
// cleanly with exit code 0.
func TestSignalsReloadAndDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := certs.EnsureSelfSigned(certFile, keyFile, []string{"first.test"}); err != nil {
		t.Fatal(err)
	}
	smtpAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	adminAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	implicitAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	cfgPath := filepath.Join(dir, "sealgate.yaml")
	cfg := fmt.Sprintf("data_dir: %s\nlog: {format: json}\ninbound:\n  listen: %s\n  implicit_tls_listen: %s\n  tls: {cert_file: %s, key_file: %s}\nadmin:\n  listen: %s\n",
		filepath.Join(dir, "data"), smtpAddr, implicitAddr, certFile, keyFile, adminAddr)
	writeFile(t, cfgPath, cfg)
	srv := startServer(t, bin, cfgPath, smtpAddr)

	for _, path := range []string{"/healthz", "/readyz"} {
		// Ready comes once the scheduler has loaded the queue, which
		// may be just after the SMTP listener opens: poll, as a probe does.
		for deadline := time.Now().Add(10 * time.Second); ; {
			resp, err := http.Get("http://" + adminAddr + path)
			if err == nil {
				resp.Body.Close()
			}
			if err == nil && resp.StatusCode == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET %s: %v %v", path, resp, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	servedName := func() string {
		c, err := tls.Dial("tcp", implicitAddr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		leaf := c.ConnectionState().PeerCertificates[0]
		return leaf.Subject.CommonName
	}
	if name := servedName(); name != "first.test" {
		t.Fatalf("serving %q", name)
	}

	// A broken config on SIGHUP is refused; the server keeps running.
	writeFile(t, cfgPath, cfg+"bogus_key: 1\n")
	srv.Process.Signal(syscall.SIGHUP)
	time.Sleep(300 * time.Millisecond)
	if name := servedName(); name != "first.test" {
		t.Fatalf("after refused reload serving %q", name)
	}

	// A renewed certificate is picked up on SIGHUP.
	writeFile(t, cfgPath, cfg)
	os.Remove(certFile)
	os.Remove(keyFile)
	if err := certs.EnsureSelfSigned(certFile, keyFile, []string{"second.test"}); err != nil {
		t.Fatal(err)
	}
	srv.Process.Signal(syscall.SIGHUP)
	for i := 0; servedName() != "second.test"; i++ {
		if i == 100 {
			t.Fatal("SIGHUP did not reload the certificate")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Inbound limits too: the next session gets max_recipients 1.
	recipientsTaken := func() int {
		c, err := smtp.Dial(smtpAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Mail("a@org.test", nil); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, r := range []string{"b1@dest.test", "b2@dest.test"} {
			if err := c.Rcpt(r, nil); err != nil {
				if e, ok := err.(*smtp.SMTPError); !ok || e.Code != 452 {
					t.Fatalf("RCPT %s: %v", r, err)
				}
				break
			}
			n++
		}
		return n
	}
	if n := recipientsTaken(); n != 2 {
		t.Fatalf("%d recipients taken before the reload", n)
	}
	writeFile(t, cfgPath, strings.Replace(cfg, "inbound:\n", "inbound:\n  max_recipients: 1\n", 1))
	srv.Process.Signal(syscall.SIGHUP)
	for i := 0; recipientsTaken() != 1; i++ {
		if i == 100 {
			t.Fatal("SIGHUP did not reload inbound.max_recipients")
		}
		time.Sleep(20 * time.Millisecond)
	}

	srv.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- srv.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	log, _ := os.ReadFile(filepath.Join(filepath.Dir(srv.Stderr.(*os.File).Name()), "server.log"))
	for _, want := range []string{`"msg":"config reload refused; the running config stays"`, `bogus_key`, `"msg":"listener certificate reloaded"`, `"msg":"policy reloaded"`, `"msg":"inbound settings reloaded"`, `"msg":"stopped"`} {
		if !strings.Contains(string(log), want) {
			t.Errorf("server log lacks %s:\n%s", want, log)
		}
	}
}
