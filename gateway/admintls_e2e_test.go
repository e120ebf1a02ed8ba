package gateway_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/gateway/admin"
	"github.com/sealgate/sealgate/internal/testutil"
)

// writeCertPair writes a certificate and key for hosts, issued by ca.
func writeCertPair(t *testing.T, ca *testutil.CA, dir string, hosts ...string) (certFile, keyFile string) {
	t.Helper()
	c := ca.Issue(t, hosts...)
	var chain []byte
	for _, der := range c.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, hosts[0]+".pem"), filepath.Join(dir, hosts[0]+".key")
	os.WriteFile(certFile, chain, 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	return certFile, keyFile
}

// TestAdminListenerOverTLS: with admin.tls the listener speaks HTTPS
// only (TLS 1.2 and up), answers the names in admin.hosts, and the CLI's
// client trusts exactly its certificate.
func TestAdminListenerOverTLS(t *testing.T) {
	ca := testutil.NewCA(t)
	dir := t.TempDir()
	certFile, keyFile := writeCertPair(t, ca, dir, "relay.test")
	otherCert, _ := writeCertPair(t, ca, dir, "other.test")
	e := newE2EWith(t, testutil.NewDNSServer(t), ca, fmt.Sprintf("admin:\n  tls: {cert_file: %s, key_file: %s}\n  hosts: [\"relay.test:8025\"]\n", certFile, keyFile))
	addr := e.gw.AdminAddr()
	tok, err := admin.ReadToken(e.gw.Config().AdminTokenFile())
	if err != nil {
		t.Fatal(err)
	}

	// Plain HTTP gets nothing useful.
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/api/v1/queue", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req); err == nil {
		if resp.StatusCode == http.StatusOK {
			t.Error("the TLS listener answered plain HTTP")
		}
		resp.Body.Close()
	}
	// TLS 1.1 is refused.
	if c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11}); err == nil {
		c.Close()
		t.Error("TLS 1.1 accepted")
	}
	// The pinned client works; one pinned to another certificate does not.
	c, err := admin.NewAdminClientTLS(addr, tok, certFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.List(); err != nil {
		t.Errorf("pinned client: %v", err)
	}
	wrong, _ := admin.NewAdminClientTLS(addr, tok, otherCert)
	if _, err := wrong.List(); err == nil || !strings.Contains(err.Error(), "not the one in admin.tls.cert_file") {
		t.Errorf("client pinned to another certificate: %v", err)
	}
	// An integrator verifying the name, with the Host it was given.
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "relay.test"}}}
	req, _ = http.NewRequest(http.MethodGet, "https://"+addr+"/api/v1/stats", nil)
	req.Host = "relay.test:8025"
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := hc.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("verified HTTPS with the configured Host: %v %v", resp, err)
	}
	resp.Body.Close()
	req.Host = "evil.test"
	if resp, err := hc.Do(req); err != nil || resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("a foreign Host: %v %v", resp, err)
	}
}
