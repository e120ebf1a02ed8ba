package policy

import (
	"fmt"
	"net/netip"
)

// RelayDecision says whether a client may relay mail and why.
type RelayDecision struct {
	Allowed bool
	Reason  string
}

// MayRelay decides whether a client may relay: it must have
// authenticated (authUser non-empty) or connect from a trusted network.
// IPv4-mapped IPv6 addresses are compared as IPv4.
func MayRelay(client netip.Addr, authUser string, trusted []netip.Prefix) RelayDecision {
	if authUser != "" {
		return RelayDecision{Allowed: true, Reason: fmt.Sprintf("authenticated as %s", authUser)}
	}
	client = client.Unmap()
	for _, p := range trusted {
		if p.Contains(client) {
			return RelayDecision{Allowed: true, Reason: fmt.Sprintf("trusted network %s", p)}
		}
	}
	return RelayDecision{Allowed: false, Reason: fmt.Sprintf("%s is not in a trusted network and not authenticated", client)}
}
