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

// sharedCloudRanges are the sending ranges that Microsoft 365 (Exchange
// Online Protection) and Google Workspace share among all their tenants:
// a trusted network that holds one lets every tenant of that cloud relay.
// Published by the providers (the Office 365 endpoints service,
// _spf.google.com); they change, so this list only warns.
var sharedCloudRanges = []struct{ provider, cidr string }{
	{"Microsoft 365", "40.92.0.0/15"}, {"Microsoft 365", "40.107.0.0/16"}, {"Microsoft 365", "52.100.0.0/14"},
	{"Microsoft 365", "104.47.0.0/17"}, {"Microsoft 365", "2a01:111:f400::/48"}, {"Microsoft 365", "2a01:111:f403::/48"},
	{"Google", "35.190.247.0/24"}, {"Google", "64.233.160.0/19"}, {"Google", "66.102.0.0/20"}, {"Google", "66.249.80.0/20"},
	{"Google", "72.14.192.0/18"}, {"Google", "74.125.0.0/16"}, {"Google", "108.177.8.0/21"}, {"Google", "108.177.96.0/19"},
	{"Google", "173.194.0.0/16"}, {"Google", "209.85.128.0/17"}, {"Google", "216.58.192.0/19"}, {"Google", "216.239.32.0/19"},
	{"Google", "172.217.0.0/19"}, {"Google", "172.217.32.0/20"}, {"Google", "172.217.128.0/19"}, {"Google", "172.217.160.0/20"},
	{"Google", "172.217.192.0/19"}, {"Google", "35.191.0.0/16"}, {"Google", "130.211.0.0/22"},
	{"Google", "2001:4860:4000::/36"}, {"Google", "2404:6800:4000::/36"}, {"Google", "2607:f8b0:4000::/36"},
	{"Google", "2800:3f0:4000::/36"}, {"Google", "2a00:1450:4000::/36"}, {"Google", "2c0f:fb50:4000::/36"},
}

// Warnings are what `config check` and serve say about a valid config
// that is probably not what the admin meant, each naming file, line and
// key: today, trusted networks that hold a cloud's shared sending range.
func (c *Config) Warnings() []string {
	var out []string
	for i, s := range c.Inbound.TrustedNetworks {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			continue
		}
		seen := map[string]bool{}
		for _, r := range sharedCloudRanges {
			cloud := netip.MustParsePrefix(r.cidr)
			if !pfx.Overlaps(cloud) || seen[r.provider] {
				continue
			}
			seen[r.provider] = true
			path := fmt.Sprintf("inbound.trusted_networks[%d]", i)
			out = append(out, c.FieldError(path, fmt.Errorf("%s holds %s's shared sending range %s: every %s tenant could relay through this gateway and get its DKIM signature; bind the range to your tenant with inbound.tenants instead",
				s, r.provider, r.cidr, r.provider)).Error())
		}
	}
	return out
}
