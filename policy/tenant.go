package policy

import (
	"crypto/x509"
	"fmt"
	"net/mail"
	"net/netip"
	"strings"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/internal/mailtext"
)

// Tenant is inbound.tenants[i] in the form the checks use: networks
// parsed, domains canonical. A client in Networks relays without AUTH
// only under this binding.
type Tenant struct {
	Name           string
	Networks       []netip.Prefix
	SenderDomains  []string // canonical (mailtext.CanonicalDomain)
	M365TenantID   string   // "" = not checked
	ClientCertName string   // "" = not checked
}

// crossTenantHeader is the field Exchange Online stamps with the ID of
// the tenant a message comes from.
const crossTenantHeader = "X-Ms-Exchange-Crosstenant-Id"

// Tenants returns inbound.tenants compiled; entries validation refused
// are skipped.
func Tenants(in config.Inbound) []Tenant {
	var out []Tenant
	for _, t := range in.Tenants {
		ct := Tenant{Name: t.Name, M365TenantID: strings.ToLower(t.M365TenantID), ClientCertName: t.ClientCertName}
		for _, s := range t.Networks {
			if p, err := netip.ParsePrefix(s); err == nil {
				ct.Networks = append(ct.Networks, p.Masked())
			}
		}
		for _, d := range t.SenderDomains {
			if cd, err := mailtext.CanonicalDomain(d); err == nil {
				ct.SenderDomains = append(ct.SenderDomains, cd)
			}
		}
		out = append(out, ct)
	}
	return out
}

// TenantsFor returns the tenants whose networks hold client. More than
// one is normal: every tenant of a cloud sends from the same ranges.
func TenantsFor(client netip.Addr, tenants []Tenant) []*Tenant {
	client = client.Unmap()
	var out []*Tenant
	for i := range tenants {
		for _, p := range tenants[i].Networks {
			if p.Contains(client) {
				out = append(out, &tenants[i])
				break
			}
		}
	}
	return out
}

// AnyClientCert says whether some tenant asks for a client certificate.
func AnyClientCert(tenants []Tenant) bool {
	for _, t := range tenants {
		if t.ClientCertName != "" {
			return true
		}
	}
	return false
}

// CheckEnvelope checks what is known at MAIL: the envelope sender's
// canonical domain and the client certificate (peer chain as the TLS
// handshake gave it, nil without TLS or without a certificate, verified
// against roots). The result says what failed, in words; "" is a pass.
func (t *Tenant) CheckEnvelope(senderDomain string, peer []*x509.Certificate, roots *x509.CertPool) string {
	if senderDomain == "" {
		return "the envelope sender has no domain (null sender)"
	}
	if !t.ownsDomain(senderDomain) {
		return fmt.Sprintf("envelope sender domain %s is not one of the tenant's sender domains", senderDomain)
	}
	if t.ClientCertName == "" {
		return ""
	}
	if len(peer) == 0 {
		return fmt.Sprintf("no TLS client certificate (one for %s is required)", t.ClientCertName)
	}
	inter := x509.NewCertPool()
	for _, c := range peer[1:] {
		inter.AddCert(c)
	}
	// Any extended key usage: public CAs no longer all issue the
	// client-auth one, and the name is what binds the tenant.
	opts := x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	if _, err := peer[0].Verify(opts); err != nil {
		return fmt.Sprintf("TLS client certificate not trusted: %v", err)
	}
	if err := peer[0].VerifyHostname(t.ClientCertName); err != nil {
		return fmt.Sprintf("TLS client certificate is not for %s", t.ClientCertName)
	}
	return ""
}

// CheckHeader checks what is known after DATA: every header From
// domain, and the Exchange Online tenant ID when the tenant names one.
// header maps canonical field names to their values, as
// net/textproto.MIMEHeader does. "" is a pass.
func (t *Tenant) CheckHeader(header map[string][]string) string {
	froms := header["From"]
	if len(froms) != 1 {
		return fmt.Sprintf("the message has %d From header fields, not one", len(froms))
	}
	list, err := mail.ParseAddressList(froms[0])
	if err != nil || len(list) == 0 {
		return "the header From cannot be read"
	}
	for _, a := range list {
		_, domain, err := mailtext.CanonicalAddress(a.Address)
		if err != nil || !t.ownsDomain(domain) {
			return fmt.Sprintf("header From domain %s is not one of the tenant's sender domains", mailtext.OneLine(mailtext.Domain(a.Address)))
		}
	}
	if t.M365TenantID == "" {
		return ""
	}
	ids := header[crossTenantHeader]
	if len(ids) == 0 {
		return "the message has no X-MS-Exchange-CrossTenant-Id"
	}
	// Every copy must agree: another tenant cannot add ours beside the
	// one Exchange Online stamped.
	for _, id := range ids {
		if !strings.EqualFold(strings.TrimSpace(id), t.M365TenantID) {
			return "X-MS-Exchange-CrossTenant-Id is another tenant's"
		}
	}
	return ""
}

// ownsDomain: d is one of the sender domains or a subdomain of one.
func (t *Tenant) ownsDomain(d string) bool {
	for _, s := range t.SenderDomains {
		if d == s || strings.HasSuffix(d, "."+s) {
			return true
		}
	}
	return false
}
