package delivery

// The TLS side of delivery: the client TLS settings, certificate and DANE
// verification of the peer, and whether a connection meets the level a
// delivery requires.

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/internal/dnsres"
	"github.com/sealgate/sealgate/policy"
)

// mtastsOutcome describes the MTA-STS result of a connection for the
// attempt record. In testing mode nothing is enforced, so this is where a
// failure shows (RFC 8461 §5: report, deliver anyway).
func mtastsOutcome(req policy.TLSRequirement, c *outboundConn) string {
	p := req.MTASTS
	if p == nil {
		return ""
	}
	if c.dane != "" {
		return string(p.Mode) + ": not applied (DANE takes precedence)"
	}
	var problems []string
	if !p.MatchesMX(c.host) {
		problems = append(problems, c.host+" not in policy")
	}
	if c.tls == nil {
		problems = append(problems, "no TLS")
	} else if !c.verified {
		problems = append(problems, "certificate not verified")
	}
	if len(problems) == 0 {
		return string(p.Mode) + ": ok"
	}
	return string(p.Mode) + ": would fail (" + strings.Join(problems, ", ") + ")"
}

// tlsRequirementError: the connection cannot meet the TLS level. result
// is the RFC 8460 result type for TLS reports.
type tlsRequirementError struct{ why, result string }

func (e *tlsRequirementError) Error() string { return e.why }

// meetsTLS says why c does not satisfy level, or nil. A DANE match
// authenticates the peer as a verified certificate would (RFC 7672).
func meetsTLS(c *outboundConn, level policy.TLSLevel) error {
	switch {
	case (level >= policy.TLSEncrypt || c.daneRequired) && c.tls == nil:
		return &tlsRequirementError{"no TLS", "starttls-not-supported"}
	case c.daneRequired && c.dane == "":
		return &tlsRequirementError{"DANE: " + c.daneErr, "validation-failure"}
	case level >= policy.TLSVerify && !c.verified && c.dane == "":
		return &tlsRequirementError{"certificate not verified: " + c.certErr, c.certResult}
	}
	return nil
}

// ClientTLSConfig is the TLS configuration of every outbound SMTP
// session (delivery and probes): TLS 1.2 minimum (1.3 preferred), strong
// suites only. It does not reject a peer certificate itself: inspect
// gets the connection state to verify and record, so that opportunistic
// TLS still encrypts when verification fails while the verdict is kept
// for the attempt record and enforced by whoever needs it.
func ClientTLSConfig(host string, inspect func(tls.ConnectionState)) *tls.Config {
	return &tls.Config{
		ServerName:         host,
		MinVersion:         tls.VersionTLS12, // TLS 1.3 preferred: Go offers it first
		CipherSuites:       certs.StrongCipherSuites(),
		InsecureSkipVerify: true, // verified by inspect, recorded, enforced by meetsTLS
		VerifyConnection: func(cs tls.ConnectionState) error {
			inspect(cs)
			return nil
		},
	}
}

// tlsConfig records the PKIX and DANE verdicts of the peer in oc.
func (d *Deliverer) tlsConfig(host string, oc *outboundConn, tlsa []dnsres.TLSARecord) *tls.Config {
	return ClientTLSConfig(host, func(cs tls.ConnectionState) {
		oc.verified, oc.certErr, oc.certResult = VerifyPeer(cs, host, d.opts.RootCAs)
		if len(tlsa) > 0 {
			if rec, err := daneVerify(cs.PeerCertificates, host, tlsa); err == nil {
				oc.dane = rec.String()
			} else {
				oc.daneErr = err.Error()
			}
		}
	})
}

// VerifyPeer checks the peer chain against roots and host (RFC 6125 as
// Go implements it) and classifies a failure in RFC 8460's terms.
func VerifyPeer(cs tls.ConnectionState, host string, roots *x509.CertPool) (ok bool, problem, result string) {
	if len(cs.PeerCertificates) == 0 {
		return false, "no certificate", "validation-failure"
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: host, Roots: roots, Intermediates: inter})
	if err == nil {
		return true, "", ""
	}
	var (
		hostErr    x509.HostnameError
		invalidErr x509.CertificateInvalidError
		unknownErr x509.UnknownAuthorityError
	)
	switch {
	case errors.As(err, &hostErr):
		result = "certificate-host-mismatch"
	case errors.As(err, &invalidErr) && invalidErr.Reason == x509.Expired:
		result = "certificate-expired"
	case errors.As(err, &unknownErr):
		result = "certificate-not-trusted"
	default:
		result = "validation-failure"
	}
	return false, err.Error(), result
}
