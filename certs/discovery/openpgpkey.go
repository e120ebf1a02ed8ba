package discovery

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/sealgate/sealgate/certs"
)

// openpgpkeyName is where RFC 7929 §3 publishes a local part's keys:
// the SHA2-256 of the local part truncated to 28 octets, in hex, under
// _openpgpkey.DOMAIN. RFC 8162 §3 names SMIMEA records the same way
// under _smimecert.DOMAIN.
func openpgpkeyName(local, domain string) string { return hashedOwner(local, "_openpgpkey", domain) }

func hashedOwner(local, label, domain string) string {
	sum := sha256.Sum256([]byte(local))
	return hex.EncodeToString(sum[:28]) + "." + label + "." + domain
}

// localForms are the local parts to ask the DNS about: as written, and
// lower-cased when that differs (RFC 7929 §3 and RFC 8162 §3 leave case
// to the domain; most publish the lower-case form).
func localForms(local string) []string {
	if lower := strings.ToLower(local); lower != local {
		return []string{local, lower}
	}
	return []string{local}
}

// openpgpkey asks the DNS for OPENPGPKEY records (localForms). An answer is used only when the resolver is trusted
// to validate DNSSEC and says it did (the AD bit): without DNSSEC the
// record proves nothing about who published it.
func (d *Discoverer) openpgpkey(ctx context.Context, address, local, domain string) ([]certs.Key, time.Duration, string) {
	if !d.opts.Resolver.DNSSECTrusted {
		return nil, 0, "OPENPGPKEY not used (outbound.dnssec_trusted_resolver is off)"
	}
	why := "no OPENPGPKEY record"
	for _, l := range localForms(local) {
		resp, err := d.opts.Resolver.Query(ctx, openpgpkeyName(l, domain), dns.TypeOPENPGPKEY)
		if err != nil {
			why = "OPENPGPKEY lookup failed"
			continue
		}
		var data []byte
		var ttl time.Duration
		for _, rr := range resp.Answer {
			rec, ok := rr.(*dns.OPENPGPKEY)
			if !ok {
				continue
			}
			b, err := base64.StdEncoding.DecodeString(rec.PublicKey)
			if err != nil {
				continue
			}
			data = append(data, b...)
			if t := time.Duration(rec.Hdr.Ttl) * time.Second; ttl == 0 || t < ttl {
				ttl = t
			}
		}
		if len(data) == 0 {
			continue
		}
		if !resp.AuthenticatedData {
			why = "OPENPGPKEY record not DNSSEC-authenticated, not used"
			continue
		}
		keys, err := certs.DiscoveredOpenPGP(data, address, certs.SourceOPENPGPKEY, d.opts.Now())
		if err != nil {
			why = "OPENPGPKEY key refused: " + refusal(err)
			continue
		}
		return keys, max(ttl, time.Minute), "" // a TTL of 0 must not mean "keep for a day"
	}
	return nil, 0, why
}
