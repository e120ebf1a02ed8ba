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
// _openpgpkey.DOMAIN.
func openpgpkeyName(local, domain string) string {
	sum := sha256.Sum256([]byte(local))
	return hex.EncodeToString(sum[:28]) + "._openpgpkey." + domain
}

// openpgpkey asks the DNS for OPENPGPKEY records. RFC 7929 hashes the
// local part as written and leaves case to the domain (§3); most
// domains publish the lower-case form, so a local part with capitals is
// asked both ways. An answer is used only when the resolver is trusted
// to validate DNSSEC and says it did (the AD bit): without DNSSEC the
// record proves nothing about who published it.
func (d *Discoverer) openpgpkey(ctx context.Context, address, local, domain string) ([]certs.Key, time.Duration, string) {
	if !d.opts.Resolver.DNSSECTrusted {
		return nil, 0, "OPENPGPKEY not used (outbound.dnssec_trusted_resolver is off)"
	}
	locals := []string{local}
	if lower := strings.ToLower(local); lower != local {
		locals = append(locals, lower)
	}
	why := "no OPENPGPKEY record"
	for _, l := range locals {
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
