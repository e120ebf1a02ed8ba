package policy

import (
	"fmt"
	"strings"
)

// TLSLevel is how strictly a delivery must be protected by TLS. Levels
// are ordered: a check may raise the level, never lower it.
type TLSLevel int

// TLS levels, weakest first (the names follow Postfix's
// smtp_tls_security_level, which mail admins know). The zero value is
// TLSMay, so a requirement nobody set means opportunistic TLS, never none.
const (
	// TLSNone never uses STARTTLS: only for peers whose TLS is broken.
	TLSNone TLSLevel = iota - 1
	// TLSMay uses STARTTLS whenever offered; delivers in plaintext when
	// it is not, and over TLS with an unverified certificate.
	TLSMay
	// TLSEncrypt requires TLS; any certificate.
	TLSEncrypt
	// TLSVerify requires TLS with a certificate that validates and
	// matches the MX host name.
	TLSVerify
)

var tlsLevelNames = []string{"none", "may", "encrypt", "verify"}

func (l TLSLevel) String() string {
	if i := int(l) + 1; i >= 0 && i < len(tlsLevelNames) {
		return tlsLevelNames[i]
	}
	return fmt.Sprintf("TLSLevel(%d)", int(l))
}

// ParseTLSLevel reads a level name as written in the config.
func ParseTLSLevel(s string) (TLSLevel, error) {
	for i, n := range tlsLevelNames {
		if s == n {
			return TLSLevel(i - 1), nil
		}
	}
	return 0, fmt.Errorf("unknown TLS level %q (none, may, encrypt, verify)", s)
}

// TLSInputs is what the transport decision for one delivery depends on.
type TLSInputs struct {
	Domain string
	// Configured is outbound.tls_policy's level for Domain (its own
	// entry, else the default); ConfiguredBy says which.
	Configured   TLSLevel
	ConfiguredBy string
	// RequireTLS: the message was received with MAIL FROM … REQUIRETLS
	// (RFC 8689), which demands verified TLS on every hop.
	RequireTLS bool
	// DANEOnly: the configured policy is dane-only.
	DANEOnly bool
	// History is what earlier deliveries and probes showed (nil: none).
	History *TLSHistory
	// MTASTS is the domain's current MTA-STS policy (nil: none).
	MTASTS *MTASTSPolicy
}

// TLSHistory is the part of a domain's record that the decision uses.
type TLSHistory struct {
	TLSSeen  bool // has taken mail (or a probe) over TLS
	Verified bool // with a certificate valid for its MX
	Since    string
}

// TLSRequirement is the decision: the level a delivery must meet and the
// checks that set it, in words, for logs and the attempt record.
type TLSRequirement struct {
	Level TLSLevel
	// RequiredBy names what made TLS mandatory ("" when nothing did).
	RequiredBy string
	// RequireTLSExtension: the next hop must support REQUIRETLS too.
	RequireTLSExtension bool
	// MTASTS is the policy in force: in enforce mode only MX hosts it
	// names may be used; in testing mode failures are only recorded.
	MTASTS *MTASTSPolicy
	// DANEOnly: a host without usable DNSSEC-validated TLSA records may
	// not receive the delivery (tls_policy dane-only).
	DANEOnly bool
}

// MTASTSMode is the mode of the policy in force, "" without one.
func (r TLSRequirement) MTASTSMode() string {
	if r.MTASTS == nil {
		return ""
	}
	return string(r.MTASTS.Mode)
}

// MXAllowed says whether host may receive the delivery: with an enforced
// MTA-STS policy, only hosts its mx patterns match.
func (r TLSRequirement) MXAllowed(host string) bool {
	if r.MTASTS == nil || r.MTASTS.Mode != MTASTSEnforce {
		return true
	}
	return r.MTASTS.MatchesMX(host)
}

// DecideTLS runs the chain of transport checks for one delivery. Each
// check may only raise the level. (MTA-STS, DANE and the domain's TLS
// history join this chain with their issue.)
func DecideTLS(in TLSInputs) TLSRequirement {
	req := TLSRequirement{Level: in.Configured, DANEOnly: in.DANEOnly}
	var by []string
	switch {
	case in.DANEOnly:
		by = append(by, fmt.Sprintf("tls_policy dane-only (%s)", in.ConfiguredBy))
	case in.Configured >= TLSEncrypt:
		by = append(by, fmt.Sprintf("tls_policy %s (%s)", in.Configured, in.ConfiguredBy))
	}
	// An admin's explicit "none" for this domain is a decision, not a
	// silent downgrade: it stands (until they change it).
	explicitNone := in.Configured == TLSNone && in.ConfiguredBy != "default"
	if h := in.History; h != nil && h.TLSSeen && !explicitNone {
		// A domain that has shown TLS is never downgraded silently: a
		// missing STARTTLS now is more likely an attacker stripping it.
		want, what := TLSEncrypt, "TLS"
		if h.Verified {
			want, what = TLSVerify, "verified TLS"
		}
		if req.Level < want {
			req.Level = want
			by = append(by, fmt.Sprintf("domain history (%s seen since %s)", what, h.Since))
		}
	}
	if p := in.MTASTS; p != nil && p.Mode != MTASTSNone {
		req.MTASTS = p
		if p.Mode == MTASTSEnforce && req.Level < TLSVerify {
			req.Level = TLSVerify
			by = append(by, "MTA-STS enforce")
		}
	}
	if in.RequireTLS {
		if req.Level < TLSVerify {
			req.Level = TLSVerify
		}
		req.RequireTLSExtension = true
		by = append(by, "REQUIRETLS")
	}
	req.RequiredBy = strings.Join(by, ", ")
	return req
}
