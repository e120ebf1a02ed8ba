// Package netguard says whether an address a public name resolved to
// may be dialled: the outbound rooms (delivery to MX hosts, key
// discovery over HTTPS) refuse non-public addresses unless the admin
// allowed their network (outbound.allowed_private_networks), so that a
// domain's DNS cannot make the gateway reach something internal.
//
// It does not resolve names or dial; callers do, and ask Refuse first.
package netguard

import (
	"fmt"
	"net/netip"
)

// nonPublicNetworks are IANA's special-purpose blocks that are not
// globally reachable (RFC 6890 and its updates), documentation ranges,
// multicast and reserved space. A public domain's DNS pointing there is
// a misconfiguration or an attempt to make the gateway reach something
// internal (server-side request forgery: an admin port, a cloud
// metadata service, the gateway itself).
var nonPublicNetworks = []struct {
	prefix netip.Prefix
	kind   string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "reserved"}, // "this network"
	{netip.MustParsePrefix("10.0.0.0/8"), "private"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared (carrier-grade NAT)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private"},
	{netip.MustParsePrefix("192.0.0.0/24"), "reserved"}, // IETF protocol assignments
	{netip.MustParsePrefix("192.0.2.0/24"), "documentation"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("198.51.100.0/24"), "documentation"},
	{netip.MustParsePrefix("203.0.113.0/24"), "documentation"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"}, // and 255.255.255.255
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "reserved"}, // local-use NAT64
	{netip.MustParsePrefix("100::/64"), "reserved"},       // discard-only
	{netip.MustParsePrefix("2001:db8::/32"), "documentation"},
	{netip.MustParsePrefix("fc00::/7"), "private"}, // unique local
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

// NonPublic names the kind of a non-public address ("loopback",
// "private", …), or returns "" for a public one. An IPv4-mapped IPv6
// address is judged as the IPv4 address it carries.
func NonPublic(ip netip.Addr) string {
	ip = ip.Unmap()
	if ip.IsUnspecified() {
		return "unspecified"
	}
	for _, n := range nonPublicNetworks {
		if n.prefix.Contains(ip) {
			return n.kind
		}
	}
	return ""
}

// Refuse returns why ip must not be dialled — a non-public address
// outside every allowed network — or nil when it may.
func Refuse(ip netip.Addr, allowed []netip.Prefix) error {
	ip = ip.Unmap()
	kind := NonPublic(ip)
	if kind == "" {
		return nil
	}
	for _, p := range allowed {
		if p.Contains(ip) {
			return nil
		}
	}
	return fmt.Errorf("%s address %s, not dialled (not in outbound.allowed_private_networks)", kind, ip)
}
