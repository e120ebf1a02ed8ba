package delivery

import (
	"fmt"
	"net"
	"net/netip"
)

// nonPublicNetworks are the address blocks a destination's MX host must
// not resolve to unless the admin allows the network: IANA's
// special-purpose blocks that are not globally reachable (RFC 6890 and
// its updates), documentation ranges, multicast and reserved space. A
// public domain's DNS pointing there is a misconfiguration or an attempt
// to make the gateway reach something internal (server-side request
// forgery: an admin port, a cloud metadata service, the gateway itself).
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

// nonPublic names the kind of a non-public address ("loopback",
// "private", …), or returns "" for a public one. An IPv4-mapped IPv6
// address is judged as the IPv4 address it carries.
func nonPublic(ip netip.Addr) string {
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

// refusal is why an MX address is not dialled; loop marks our own
// listener.
type refusal struct {
	reason string
	loop   bool
}

// guardMX decides whether an MX host's address may be dialled: never
// our own listener (a mail loop), and a non-public address only inside
// outbound.allowed_private_networks. It returns nil when it may.
func (d *Deliverer) guardMX(ip netip.Addr, port int) *refusal {
	ip = ip.Unmap()
	if d.isSelf(ip, port) {
		return &refusal{reason: "loops back to myself (it is this gateway's own listener)", loop: true}
	}
	kind := nonPublic(ip)
	if kind == "" {
		return nil
	}
	for _, p := range d.opts.AllowedPrivateNetworks {
		if p.Contains(ip) {
			return nil
		}
	}
	return &refusal{reason: fmt.Sprintf("%s address, not dialled (not in outbound.allowed_private_networks)", kind)}
}

// isSelf reports whether ip:port is one of our inbound listeners. A
// listener on the unspecified address is on every local address.
func (d *Deliverer) isSelf(ip netip.Addr, port int) bool {
	if d.opts.Self == nil {
		return false
	}
	var local []netip.Addr // read once, only when a listener is on the wildcard address
	for _, a := range d.opts.Self() {
		ta, ok := a.(*net.TCPAddr)
		if !ok || ta.Port != port {
			continue
		}
		lip, ok := netip.AddrFromSlice(ta.IP)
		if !ok {
			continue
		}
		lip = lip.Unmap()
		if lip == ip {
			return true
		}
		if !lip.IsUnspecified() {
			continue
		}
		if ip.IsLoopback() || ip.IsUnspecified() {
			return true
		}
		if local == nil {
			local = localAddrs()
		}
		for _, l := range local {
			if l == ip {
				return true
			}
		}
	}
	return false
}

// localAddrs are the addresses of this host's interfaces.
func localAddrs() []netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out
}
