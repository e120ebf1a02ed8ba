package discovery

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/sealgate/sealgate/certs"
)

// SMIMEFound is what DiscoverSMIME found for one address.
type SMIMEFound struct {
	// Certs passed certs.VerifySMIMERecipient for the address.
	Certs []*x509.Certificate
	// TTL is the records' DNS TTL (at least a minute).
	TTL time.Duration
	// Tried says what the lookup answered when nothing was found.
	Tried []string
}

// DiscoverSMIME looks for address's S/MIME certificates in SMIMEA
// records (RFC 8162) at HASH._smimecert.DOMAIN, used only when the
// resolver is trusted to validate DNSSEC and set the AD bit, as for
// OPENPGPKEY. Only records that carry the whole certificate (selector
// Cert(0), matching Full(0)) give something to encrypt to; a digest
// can only confirm a certificate found elsewhere, and sealgate finds
// none elsewhere. Usage DANE-EE(3) makes the DNSSEC-signed record the
// trust anchor, as an admin's import is (RFC 8162 §2.1, RFC 7671 §5.1);
// PKIX-EE(1) also needs a chain to the S/MIME trust store (Options.
// SMIMERoots). Every other check of VerifySMIMERecipient applies —
// validity, key usage, email protection, the address.
//
// The smime method takes these through the key store (source
// certs.SourceSMIMEA) once it keeps certificates.
func (d *Discoverer) DiscoverSMIME(ctx context.Context, address string) SMIMEFound {
	var found SMIMEFound
	local, domain, ok := splitAddress(address)
	switch {
	case !d.opts.SMIMEA:
		found.Tried = []string{"SMIMEA off"}
		return found
	case !ok:
		found.Tried = []string{"not an address with a domain"}
		return found
	case !d.opts.Resolver.DNSSECTrusted:
		found.Tried = []string{"SMIMEA not used (outbound.dnssec_trusted_resolver is off)"}
		return found
	}
	ctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	why := "no SMIMEA record"
	for _, l := range localForms(local) {
		resp, err := d.opts.Resolver.Query(ctx, hashedOwner(l, "_smimecert", domain), dns.TypeSMIMEA)
		if err != nil {
			why = "SMIMEA lookup failed"
			continue
		}
		var records []*dns.SMIMEA
		for _, rr := range resp.Answer {
			if r, ok := rr.(*dns.SMIMEA); ok {
				records = append(records, r)
			}
		}
		if len(records) == 0 {
			continue
		}
		if !resp.AuthenticatedData {
			why = "SMIMEA record not DNSSEC-authenticated, not used"
			continue
		}
		var refused []string
		for _, r := range records {
			cert, err := d.smimeaCert(r, address)
			if err != nil {
				refused = append(refused, strings.ReplaceAll(err.Error(), "\n", "; "))
				continue
			}
			found.Certs = append(found.Certs, cert)
			if t := time.Duration(r.Hdr.Ttl) * time.Second; found.TTL == 0 || t < found.TTL {
				found.TTL = t
			}
		}
		if len(found.Certs) > 0 {
			found.TTL = max(found.TTL, time.Minute)
			d.opts.Logger.Info("S/MIME certificate discovered", "address", address, "source", certs.SourceSMIMEA,
				"serial", found.Certs[0].SerialNumber.Text(16))
			return found
		}
		why = "SMIMEA certificate refused: " + strings.Join(refused, "; ")
	}
	found.Tried = []string{why}
	return found
}

// smimeaCert takes the certificate out of one record and checks it.
func (d *Discoverer) smimeaCert(r *dns.SMIMEA, address string) (*x509.Certificate, error) {
	if r.Selector != 0 || r.MatchingType != 0 || (r.Usage != 1 && r.Usage != 3) {
		return nil, fmt.Errorf("record %d %d %d carries no certificate to encrypt to", r.Usage, r.Selector, r.MatchingType)
	}
	der, err := hex.DecodeString(r.Certificate)
	if err != nil {
		return nil, fmt.Errorf("record data is not hex")
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("not a certificate: %v", err)
	}
	check := certs.SMIMERecipientCheck{Now: d.opts.Now(), Address: address, Roots: d.opts.SMIMERoots, Imported: r.Usage == 3}
	if err := certs.VerifySMIMERecipient(cert, check); err != nil {
		return nil, err
	}
	return cert, nil
}
