package probe

import (
	"fmt"
	"strings"

	"github.com/sealgate/sealgate/policy"
)

// Verdict is what delivery would do with a domain's mail now, judged from
// a probe and the TLS requirement the gateway would apply to it, and the
// setting that would change the outcome (when one of ours can).
type Verdict struct {
	Level      string `json:"tls_level"`
	RequiredBy string `json:"tls_required_by,omitempty"`
	Delivery   string `json:"delivery"`
	Change     string `json:"change,omitempty"`
	// Notes say what the verdict did not judge (the TLSA match, a
	// history that could not be read).
	Notes []string `json:"notes,omitempty"`
}

// Judge says what delivery would make of r under req (the requirement
// from outbound.tls_policy, the domain's TLS history and its MTA-STS
// policy). DNSSEC-authenticated TLSA records make TLS mandatory, as they
// do at delivery (RFC 7672).
func Judge(r ProbeResult, req policy.TLSRequirement) Verdict {
	if len(r.TLSA) > 0 && r.TLSASecure && req.Level < policy.TLSEncrypt {
		req.Level = policy.TLSEncrypt
		req.RequiredBy = strings.TrimPrefix(req.RequiredBy+", DANE TLSA records", ", ")
	}
	v := Verdict{Level: req.Level.String(), RequiredBy: req.RequiredBy}
	dane := len(r.TLSA) > 0 && r.TLSASecure
	if dane {
		v.Notes = append(v.Notes, "DANE: delivery also requires the certificate to match the TLSA records, which this check does not compare")
	}
	if req.DANEOnly && !dane && r.Host != "" {
		v.Delivery = "deferred: tls_policy dane-only requires DNSSEC-validated TLSA records, and the domain has none"
		v.Change = fmt.Sprintf("outbound.tls_policy.domains: {%s: verify} in the config, then SIGHUP", r.Domain)
		return v
	}
	if req.MTASTS != nil && req.MTASTS.Mode == policy.MTASTSEnforce && len(req.MTASTS.MX) > 0 && r.Host != "" && !req.MXAllowed(r.Host) {
		v.Delivery = "deferred: the domain's MTA-STS policy (enforce) does not name " + r.Host
		v.Change = "the domain's own MTA-STS policy: its postmaster must list the MX (no setting here lowers that)"
		return v
	}
	required := req.Level >= policy.TLSEncrypt
	need := fmt.Sprintf("TLS level %s (required by %s)", req.Level, req.RequiredBy)
	switch {
	case r.Host == "":
		v.Delivery = "deferred, retried until queue.expiry: " + r.Error
		v.Change = "nothing on this side: no mail host of the domain answered (check its MX records and that port 25 is reachable from here)"
		if strings.Contains(r.Error, "allowed_private_networks") {
			v.Change = "outbound.allowed_private_networks, if mail to this internal address is meant"
		}
	case !r.STARTTLS && required:
		v.Delivery = "deferred: " + need + ", and the server does not offer STARTTLS"
		v.Change = change(r.Domain, req, "may")
	case !r.STARTTLS:
		v.Delivery = "in clear: the server does not offer STARTTLS"
	case r.TLSVersion == "" && !required && req.MTASTS == nil:
		v.Delivery = "in clear after the failed TLS handshake (opportunistic TLS allows it; the attempt records it): " + r.Error
	case r.TLSVersion == "":
		v.Delivery = "deferred: " + need + ", and " + r.Error
		v.Change = change(r.Domain, req, "none")
	case !r.Verified && req.Level >= policy.TLSVerify:
		v.Delivery = "deferred: " + need + ", and the certificate does not verify: " + r.CertError
		v.Change = change(r.Domain, req, "encrypt")
	case !r.Verified:
		v.Delivery = fmt.Sprintf("over %s, certificate not verified (%s): level %s accepts it", r.TLSVersion, r.CertError, req.Level)
	default:
		v.Delivery = fmt.Sprintf("over %s with a verified certificate", r.TLSVersion)
	}
	return v
}

// change names what would let the mail go when req cannot be met: our
// own setting for the domain (to level), or the reset of its history —
// unless what requires TLS is the domain's own publication (MTA-STS,
// DANE), which only the domain can change.
func change(domain string, req policy.TLSRequirement, level string) string {
	by := req.RequiredBy
	var out []string
	if strings.Contains(by, "MTA-STS") || strings.Contains(by, "DANE") {
		out = append(out, "the domain's own MTA-STS policy or TLSA records require it: its postmaster must fix the server (no setting here lowers that)")
	}
	if strings.Contains(by, "domain history") {
		// Only an explicit "none" stands above the history.
		out = append(out, fmt.Sprintf("\"sealgate domains reset %s\" forgets its TLS history, if the domain really dropped TLS", domain))
		level = "none"
	}
	if strings.Contains(by, "tls_policy") || strings.Contains(by, "domain history") {
		out = append(out, fmt.Sprintf("outbound.tls_policy.domains: {%s: %s} in the config, then SIGHUP", domain, level))
	}
	return strings.Join(out, "; or ")
}
