package delivery

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"fmt"
	"strings"

	"github.com/sealgate/sealgate/internal/dnsres"
)

// DANE for SMTP (RFC 7672). A destination host's TLSA records are used
// only when the whole path is DNSSEC-authenticated: the resolver is one
// we trust to validate (outbound.dnssec_trusted_resolver, normally a
// validating resolver on loopback), its answer to the MX query and to the
// TLSA query both carry the AD bit. Usable records make TLS mandatory and
// replace PKIX verification: the peer must match one of them.
//
// Supported: DANE-EE(3) and DANE-TA(2), selectors Cert(0) and SPKI(1),
// matching Full(0), SHA2-256(1) and SHA2-512(2). PKIX-TA(0) and PKIX-EE(1)
// are unusable for SMTP (RFC 7672 §3.1.3) and ignored.

// daneVerify checks a peer chain against TLSA records: DANE-EE matches
// the leaf (no name or expiry checks, RFC 7672 §3.1.1); DANE-TA matches a
// certificate of the chain, which must then issue the leaf for host
// (RFC 7672 §3.1.2). It returns the matching record.
func daneVerify(chain []*x509.Certificate, host string, records []dnsres.TLSARecord) (dnsres.TLSARecord, error) {
	if len(chain) == 0 {
		return dnsres.TLSARecord{}, fmt.Errorf("no certificate")
	}
	for _, rec := range records {
		switch rec.Usage {
		case 3:
			if tlsaMatches(rec, chain[0]) {
				return rec, nil
			}
		case 2:
			for _, ta := range chain[1:] {
				if !tlsaMatches(rec, ta) {
					continue
				}
				roots := x509.NewCertPool()
				roots.AddCert(ta)
				inter := x509.NewCertPool()
				for _, c := range chain[1:] {
					inter.AddCert(c)
				}
				if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: host}); err == nil {
					return rec, nil
				}
			}
		}
	}
	var names []string
	for _, r := range records {
		names = append(names, r.String())
	}
	return dnsres.TLSARecord{}, fmt.Errorf("certificate matches none of the TLSA records (%s)", strings.Join(names, "; "))
}

func tlsaMatches(rec dnsres.TLSARecord, c *x509.Certificate) bool {
	data := c.Raw
	if rec.Selector == 1 {
		data = c.RawSubjectPublicKeyInfo
	}
	switch rec.Matching {
	case 1:
		sum := sha256.Sum256(data)
		return bytes.Equal(sum[:], rec.Data)
	case 2:
		sum := sha512.Sum512(data)
		return bytes.Equal(sum[:], rec.Data)
	}
	return bytes.Equal(data, rec.Data)
}
