package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/safeio"
)

func TestSelfSignedReloadAndTLSFloor(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls", "cert.pem"), filepath.Join(dir, "tls", "key.pem")
	if err := EnsureSelfSigned(certFile, keyFile, []string{"gw.test", "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v", err, fi.Mode())
	}
	r, err := NewCertReloader(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := r.GetCertificate(nil)
	leaf, _ := x509.ParseCertificate(first.Certificate[0])
	if leaf.DNSNames[0] != "gw.test" || !leaf.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) {
		t.Errorf("SANs %v %v", leaf.DNSNames, leaf.IPAddresses)
	}

	// Existing files are kept.
	if err := EnsureSelfSigned(certFile, keyFile, []string{"other.test"}); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if c, _ := r.GetCertificate(nil); string(c.Certificate[0]) != string(first.Certificate[0]) {
		t.Error("EnsureSelfSigned replaced existing files")
	}

	// A new certificate is picked up; a broken one keeps the old.
	os.Remove(certFile)
	os.Remove(keyFile)
	if err := EnsureSelfSigned(certFile, keyFile, []string{"new.test"}); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	second, _ := r.GetCertificate(nil)
	if string(second.Certificate[0]) == string(first.Certificate[0]) {
		t.Error("Reload did not pick up the new certificate")
	}
	// A key that others may read is refused, like sshd's host keys; the
	// working certificate stays. Group-readable (ssl-cert) is accepted.
	os.Chmod(keyFile, 0o644)
	if err := r.Reload(); !errors.Is(err, safeio.ErrTooOpen) || !strings.Contains(err.Error(), keyFile) {
		t.Errorf("Reload with a world-readable key = %v, want ErrTooOpen naming it", err)
	}
	os.Chmod(keyFile, 0o640)
	if err := r.Reload(); err != nil {
		t.Errorf("Reload with a group-readable key: %v", err)
	}
	os.WriteFile(certFile, []byte("not a certificate"), 0o644)
	if err := r.Reload(); err == nil {
		t.Error("Reload accepted a broken certificate")
	}
	if c, _ := r.GetCertificate(nil); string(c.Certificate[0]) != string(second.Certificate[0]) {
		t.Error("a failed Reload dropped the working certificate")
	}

	// The server refuses TLS 1.1 and accepts 1.2 with a strong suite.
	ln, err := tls.Listen("tcp", "127.0.0.1:0", ServerTLSConfig(r))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	old := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}
	if c, err := tls.Dial("tcp", ln.Addr().String(), old); err == nil {
		c.Close()
		t.Error("TLS 1.1 handshake succeeded")
	}
	weak := &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_128_GCM_SHA256}}
	if c, err := tls.Dial("tcp", ln.Addr().String(), weak); err == nil {
		c.Close()
		t.Error("handshake with CBC / RSA key exchange succeeded")
	}
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("TLS 1.2 handshake: %v", err)
	}
	c.Close()
}

func TestRootPoolNamesBadFile(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	os.WriteFile(bad, []byte("nothing here"), 0o644)
	if _, err := RootPool([]string{bad}); err == nil || !strings.Contains(err.Error(), "bad.pem") {
		t.Errorf("RootPool(bad) = %v", err)
	}
	if _, err := RootPool([]string{filepath.Join(dir, "missing.pem")}); err == nil {
		t.Error("RootPool(missing) succeeded")
	}
}
