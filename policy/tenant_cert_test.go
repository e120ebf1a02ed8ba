package policy

import (
	"crypto/x509"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testutil"
)

// TestTenantClientCertificate: a tenant that names a client certificate
// relays only when the client presents one, from a trusted CA, for that
// name.
func TestTenantClientCertificate(t *testing.T) {
	ca, stranger := testutil.NewCA(t), testutil.NewCA(t)
	chain := func(c *testutil.CA, name string) []*x509.Certificate {
		cert := c.Issue(t, name)
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return []*x509.Certificate{leaf}
	}
	tn := Tenant{Name: "example", SenderDomains: []string{"example.org"}, ClientCertName: "mail.protection.example"}
	for _, tc := range []struct {
		name string
		peer []*x509.Certificate
		want string
	}{
		{"ours", chain(ca, "mail.protection.example"), ""},
		{"none", nil, "no TLS client certificate"},
		{"another name", chain(ca, "mail.other.example"), "is not for mail.protection.example"},
		{"untrusted CA", chain(stranger, "mail.protection.example"), "not trusted"},
	} {
		got := tn.CheckEnvelope("example.org", tc.peer, ca.Pool())
		if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := (&Tenant{SenderDomains: []string{"example.org"}}).CheckEnvelope("example.org", nil, ca.Pool()); got != "" {
		t.Errorf("a tenant without client_cert_name needs no certificate: %q", got)
	}
}
