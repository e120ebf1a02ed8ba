package gateway

// The TLS side of delivery: the client TLS settings, certificate and DANE
// verification of the peer, and whether a connection meets the level a
// delivery requires.

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/sealgate/sealgate/certs"
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

// tlsConfig verifies the peer certificate itself, so that opportunistic
// TLS still encrypts when verification fails while the result is
// recorded (in oc) for the attempt record.
func (d *deliverer) tlsConfig(host string, oc *outboundConn, tlsa []tlsaRecord) *tls.Config {
	return &tls.Config{
		ServerName:         host,
		MinVersion:         tls.VersionTLS12, // TLS 1.3 preferred: Go offers it first
		CipherSuites:       certs.StrongCipherSuites(),
		InsecureSkipVerify: true, // verified below, recorded, enforced by meetsTLS
		VerifyConnection: func(cs tls.ConnectionState) error {
			oc.verified, oc.certErr, oc.certResult = verifyPeer(cs, host, d.opts.RootCAs)
			if len(tlsa) > 0 {
				if rec, err := daneVerify(cs.PeerCertificates, host, tlsa); err == nil {
					oc.dane = rec.String()
				} else {
					oc.daneErr = err.Error()
				}
			}
			return nil
		},
	}
}

// verifyPeer checks the peer chain against roots and host (RFC 6125 as
// Go implements it) and classifies a failure in RFC 8460's terms.
func verifyPeer(cs tls.ConnectionState, host string, roots *x509.CertPool) (ok bool, problem, result string) {
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

func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "TLS1.3"
	case tls.VersionTLS12:
		return "TLS1.2"
	case tls.VersionTLS11:
		return "TLS1.1"
	case tls.VersionTLS10:
		return "TLS1.0"
	}
	return fmt.Sprintf("TLS-0x%04x", v)
}
