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

// DiscoverSMIMEKeys looks for address's S/MIME certificates in SMIMEA
// records (RFC 8162) at HASH._smimecert.DOMAIN, used only when the
// resolver is trusted to validate DNSSEC and set the AD bit, as for
// OPENPGPKEY. Only records that carry the whole certificate (selector
// Cert(0), matching Full(0)) give something to encrypt to; a digest
// can only confirm a certificate found elsewhere, and sealgate finds
// none elsewhere. Usage DANE-EE(3) makes the DNSSEC-signed record the
// trust anchor, as an admin's import is (RFC 8162 §2.1, RFC 7671 §5.1);
// PKIX-EE(1) also needs a chain to the S/MIME trust store (Options.
// SMIMERoots, keys.smime_roots) and is refused, with that reason, when
// there is none. Every other check of certs.VerifySMIMERecipient
// applies — validity, key usage, email protection, the address. The
// entries found (source certs.SourceSMIMEA, trust certs.TrustDANEEE or
// certs.TrustPKIXEE) are for the keyring to keep
// (certs.Keyring.FindSMIMERecipient); it implements
// certs.SMIMEDiscoverer.
func (d *Discoverer) DiscoverSMIMEKeys(ctx context.Context, address string) certs.Discovered {
	var found certs.Discovered
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
			k, err := d.smimeaKey(r, address)
			if err != nil {
				refused = append(refused, strings.ReplaceAll(err.Error(), "\n", "; "))
				continue
			}
			found.Keys = append(found.Keys, k)
			if t := time.Duration(r.Hdr.Ttl) * time.Second; found.TTL == 0 || t < found.TTL {
				found.TTL = t
			}
		}
		if len(found.Keys) > 0 {
			found.TTL = max(found.TTL, time.Minute) // a TTL of 0 must not mean "keep for a day"
			d.opts.Logger.Info("S/MIME certificate discovered", "address", found.Keys[0].Address, "source", certs.SourceSMIMEA,
				"serial", found.Keys[0].Serial, "fingerprint", found.Keys[0].Fingerprint, "trust", found.Keys[0].Trust)
			return found
		}
		why = "SMIMEA certificate refused: " + strings.Join(refused, "; ")
	}
	d.opts.Logger.Debug("S/MIME certificate discovery found nothing", "address", address, "why", why)
	found.Tried = []string{why}
	return found
}

// smimeaKey takes the certificate out of one record and checks it.
func (d *Discoverer) smimeaKey(r *dns.SMIMEA, address string) (certs.Key, error) {
	if r.Selector != 0 || r.MatchingType != 0 || (r.Usage != 1 && r.Usage != 3) {
		return certs.Key{}, fmt.Errorf("record %d %d %d carries no certificate to encrypt to", r.Usage, r.Selector, r.MatchingType)
	}
	der, err := hex.DecodeString(r.Certificate)
	if err != nil {
		return certs.Key{}, fmt.Errorf("record data is not hex")
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return certs.Key{}, fmt.Errorf("not a certificate: %v", err)
	}
	trust := certs.TrustDANEEE
	if r.Usage == 1 {
		trust = certs.TrustPKIXEE
		if d.opts.SMIMERoots == nil {
			return certs.Key{}, fmt.Errorf("PKIX-EE certificate serial %s refused: no S/MIME trust store to chain it to (keys.smime_roots)", certs.SMIMESerial(cert))
		}
	}
	return certs.DiscoveredSMIME(cert, address, certs.SourceSMIMEA, trust, d.opts.SMIMERoots, d.opts.Now())
}
