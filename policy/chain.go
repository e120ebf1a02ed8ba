package policy

import (
	"fmt"
	"strings"
)

// Method is one way of delivering to a recipient, tried in chain order
// at delivery time, or a terminal outcome.
type Method string

// Methods. tls delivers opportunistically (the transport policy, MTA-STS,
// DANE and the domain's history may still demand more); tls-verified
// demands TLS with a validated certificate (or DANE/MTA-STS); pgp, smime
// and escrow protect the content itself. drop and bounce end a chain:
// drop discards and records it (TLS exclusive), bounce returns the
// message to its sender with a DSN that says why.
const (
	MethodTLS         Method = "tls"
	MethodTLSVerified Method = "tls-verified"
	MethodPGP         Method = "pgp"
	MethodSMIME       Method = "smime"
	MethodEscrow      Method = "escrow"
	MethodDrop        Method = "drop"
	MethodBounce      Method = "bounce"
)

var methodStrength = map[Method]int{
	MethodTLS: 1, MethodTLSVerified: 2, MethodPGP: 3, MethodSMIME: 3, MethodEscrow: 3,
}

// Terminal reports whether m ends a chain rather than delivering.
func (m Method) Terminal() bool { return m == MethodDrop || m == MethodBounce }

// Chain is an ordered list of methods.
type Chain []Method

func (c Chain) String() string {
	parts := make([]string, len(c))
	for i, m := range c {
		parts[i] = string(m)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// Strings returns the chain as method names, for storage.
func (c Chain) Strings() []string {
	out := make([]string, len(c))
	for i, m := range c {
		out[i] = string(m)
	}
	return out
}

// strength is the protection a chain guarantees: that of its weakest
// delivering method (a chain may end up using any of them).
func (c Chain) strength() int {
	s := 0
	for _, m := range c {
		if v, ok := methodStrength[m]; ok && (s == 0 || v < s) {
			s = v
		}
	}
	return s
}

// ParseChain reads method names. A chain must deliver somehow or end in
// a terminal, and a terminal may only come last.
func ParseChain(names []string) (Chain, error) {
	if len(names) == 0 {
		return nil, fmt.Errorf("empty chain")
	}
	c := make(Chain, len(names))
	for i, n := range names {
		m := Method(n)
		if _, ok := methodStrength[m]; !ok && !m.Terminal() {
			return nil, fmt.Errorf("unknown method %q (tls, tls-verified, pgp, smime, escrow, drop, bounce)", n)
		}
		if m.Terminal() && i != len(names)-1 {
			return nil, fmt.Errorf("%s must be the last method of a chain", n)
		}
		c[i] = m
	}
	return c, nil
}

// applyFloor removes the methods weaker than floor; if nothing that
// delivers is left, the floor method itself is the chain (before any
// terminal the chain had).
func (c Chain) applyFloor(floor Method) Chain {
	min := methodStrength[floor]
	var out Chain
	delivering := false
	for _, m := range c {
		if m.Terminal() || methodStrength[m] >= min {
			out = append(out, m)
			delivering = delivering || !m.Terminal()
		}
	}
	if !delivering {
		out = append(Chain{floor}, out...)
	}
	return out
}
