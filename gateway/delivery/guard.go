package delivery

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/sealgate/sealgate/internal/netguard"
)

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
	kind := netguard.NonPublic(ip)
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
