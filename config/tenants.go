package config

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	"github.com/sealgate/sealgate/internal/mailtext"
)

// guidPattern is the form of a Microsoft 365 tenant ID, as Exchange
// Online writes it in X-MS-Exchange-CrossTenant-Id.
var guidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// validateTenants checks inbound.tenants. A tenant network must not
// overlap a trusted network: a client there would be trusted without
// the binding, and the binding would silently mean nothing.
func (v *validator) validateTenants(in *Inbound) {
	trusted := in.Networks()
	names := map[string]bool{}
	for i, t := range in.Tenants {
		p := fmt.Sprintf("inbound.tenants[%d]", i)
		switch {
		case t.Name == "":
			v.fail(p+".name", "must not be empty")
		case names[t.Name]:
			v.fail(p+".name", "duplicate tenant %q", t.Name)
		}
		names[t.Name] = true
		if len(t.Networks) == 0 {
			v.fail(p+".networks", "must list the provider's sending ranges")
		}
		for j, cidr := range t.Networks {
			np := fmt.Sprintf("%s.networks[%d]", p, j)
			pfx, err := netip.ParsePrefix(cidr)
			switch {
			case err != nil:
				v.fail(np, "invalid CIDR %q (write 40.92.0.0/15 or 2a01:111:f400::/48)", cidr)
				continue
			case pfx.Bits() == 0:
				v.fail(np, "%s is every address on the internet, not a provider's range", cidr)
				continue
			case pfx.Masked() != pfx:
				v.fail(np, "%s has host bits set; did you mean %s?", cidr, pfx.Masked())
				continue
			}
			for _, tp := range trusted {
				if tp.Overlaps(pfx) {
					v.fail(np, "%s overlaps inbound.trusted_networks %s: a trusted network relays without the tenant binding; list the range in one place only", cidr, tp)
				}
			}
		}
		if len(t.SenderDomains) == 0 {
			v.fail(p+".sender_domains", "must list the tenant's domains (envelope and header From must be one of them)")
		}
		for j, d := range t.SenderDomains {
			if _, err := mailtext.CanonicalDomain(d); err != nil || strings.HasPrefix(d, "[") {
				v.fail(fmt.Sprintf("%s.sender_domains[%d]", p, j), "%q is not a valid domain", d)
			}
		}
		if t.M365TenantID != "" && !guidPattern.MatchString(t.M365TenantID) {
			v.fail(p+".m365_tenant_id", "%q is not a tenant ID (a GUID like 1a2b3c4d-0000-4000-8000-00000000abcd)", t.M365TenantID)
		}
		if t.ClientCertName != "" && !validHostname(t.ClientCertName) {
			v.fail(p+".client_cert_name", "%q is not a valid host name", t.ClientCertName)
		}
	}
}
