package dnsres

import (
	"context"
	"encoding/hex"
	"fmt"

	"github.com/miekg/dns"
)

// TLSARecord is one TLSA record usable for SMTP (RFC 7672 §3.1):
// DANE-TA(2) or DANE-EE(3), selector Cert(0) or SPKI(1), matching
// Full(0), SHA2-256(1) or SHA2-512(2).
type TLSARecord struct {
	Usage, Selector, Matching uint8
	Data                      []byte
}

func (r TLSARecord) String() string {
	return fmt.Sprintf("%d %d %d %s", r.Usage, r.Selector, r.Matching, hex.EncodeToString(r.Data))
}

// TLSAState is what the DNS said about one destination host's DANE.
type TLSAState struct {
	Records []TLSARecord // usable records; empty: DANE does not apply
	// Unusable reports TLSA records that exist but cannot be used (only
	// PKIX usages, unknown parameters): RFC 7672 §2.2 says to still
	// require TLS, without authentication.
	Unusable bool
}

// DANE finds the usable TLSA records of host's SMTP port. It returns
// nothing unless the resolver is trusted and both the MX answer
// (mxSecure) and the TLSA answer are authenticated. A DNS failure on a
// secure MX is an error: RFC 7672 §2.2 forbids going on without knowing.
func (r *Resolver) DANE(ctx context.Context, host string, mxSecure bool) (TLSAState, error) {
	if !r.DNSSECTrusted || !mxSecure {
		return TLSAState{}, nil
	}
	resp, err := r.Query(ctx, "_25._tcp."+host, dns.TypeTLSA)
	if err != nil {
		return TLSAState{}, fmt.Errorf("TLSA lookup for %s: %w", host, err)
	}
	if !resp.AuthenticatedData || resp.Rcode != dns.RcodeSuccess {
		return TLSAState{}, nil
	}
	var st TLSAState
	for _, rr := range resp.Answer {
		t, ok := rr.(*dns.TLSA)
		if !ok {
			continue
		}
		data, err := hex.DecodeString(t.Certificate)
		usable := err == nil && (t.Usage == 2 || t.Usage == 3) && t.Selector <= 1 && t.MatchingType <= 2
		if !usable {
			st.Unusable = true
			continue
		}
		st.Records = append(st.Records, TLSARecord{Usage: t.Usage, Selector: t.Selector, Matching: t.MatchingType, Data: data})
	}
	return st, nil
}

// TLSAAsPublished returns host's _25._tcp TLSA records as presentation
// text, whatever their usage, and whether the answer was authenticated:
// what `domains check` shows an admin. DNS errors give no records.
func (r *Resolver) TLSAAsPublished(ctx context.Context, host string) (records []string, secure bool) {
	resp, err := r.Query(ctx, "_25._tcp."+host, dns.TypeTLSA)
	if err != nil || resp.Rcode != dns.RcodeSuccess {
		return nil, false
	}
	for _, rr := range resp.Answer {
		if t, ok := rr.(*dns.TLSA); ok {
			records = append(records, fmt.Sprintf("%d %d %d %s", t.Usage, t.Selector, t.MatchingType, t.Certificate))
		}
	}
	return records, resp.AuthenticatedData && len(records) > 0
}
