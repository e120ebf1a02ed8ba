package certs

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// S/MIME certificate discovery, the key store's side: as for OpenPGP
// (discover.go), when the store has no certificate for a recipient and
// the admin imported none for the address, the keyring asks an
// SMIMEDiscoverer (certs/discovery reads DNSSEC-authenticated SMIMEA
// records), keeps what it finds with its source, trust and a time to
// look again, and remembers a lookup that found nothing for a while. An
// imported certificate always wins.

// SMIMEDiscoverer looks for an address's S/MIME certificates outside
// the key store, under the contract of OpenPGPDiscoverer: called with
// the address as the message has it, at most once at a time per
// address, only when the store cannot serve it; failures are reported
// in Discovered.Tried (never as an error); the entries found come from
// DiscoveredSMIME. Uses says whether entries found by a source may
// still be used.
type SMIMEDiscoverer interface {
	DiscoverSMIMEKeys(ctx context.Context, address string) Discovered
	Uses(source string) bool
}

// DiscoveredSMIME makes the store entry of a certificate a directory
// published for address, after checking it for the address
// (VerifySMIMERecipient): trust TrustDANEEE is checked as an import,
// TrustPKIXEE must chain to roots. The error says why it is refused.
func DiscoveredSMIME(cert *x509.Certificate, address, source, trust string, roots *x509.CertPool, now time.Time) (Key, error) {
	addr, err := KeyAddress(address)
	if err != nil {
		return Key{}, err
	}
	if trust != TrustDANEEE && trust != TrustPKIXEE {
		return Key{}, fmt.Errorf("unknown certificate trust %q", trust)
	}
	check := SMIMERecipientCheck{Now: now, Roots: roots, Imported: trust == TrustDANEEE, Address: smimeCertAddress(cert, addr)}
	if err := VerifySMIMERecipient(cert, check); err != nil {
		return Key{}, err
	}
	k := smimeKey(cert, addr)
	k.Source, k.Trust = source, trust
	return k, nil
}

// smimeKey is the store entry of cert for addr, source import.
func smimeKey(cert *x509.Certificate, addr string) Key {
	sum := sha256.Sum256(cert.Raw)
	return Key{
		Address: addr, Kind: KindSMIME, Fingerprint: strings.ToUpper(hex.EncodeToString(sum[:])), Algorithm: smimeAlgorithm(cert),
		Created: cert.NotBefore.UTC(), Expires: cert.NotAfter.UTC(), Source: SourceImport,
		Serial: SMIMESerial(cert), Subject: cert.Subject.String(), Issuer: cert.Issuer.String(),
		Data: cert.Raw,
	}
}

// FindSMIMERecipient is SMIMERecipient that, when the store cannot
// serve address and the keyring was made with an SMIMEDiscoverer, looks
// the certificate up (ctx bounds the lookup) and keeps what it finds,
// with the caching, negative caching and import precedence of
// FindOpenPGPRecipient. The error wraps ErrNoUsableKey and says what was
// tried: "no S/MIME certificate for bob@example.org: no SMIMEA record".
func (r *Keyring) FindSMIMERecipient(ctx context.Context, address string) (*SMIMERecipient, error) {
	addr, err := KeyAddress(address)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoUsableKey, err)
	}
	if r.disc == nil || r.disc.opts.SMIME == nil {
		return r.SMIMERecipient(addr)
	}
	keys, err := r.store.Lookup(addr)
	if err != nil {
		return nil, err
	}
	now := r.now()
	if cands, fromImport := r.candidates(keys, KindSMIME, now); len(cands) > 0 {
		rcpt, err := r.pickSMIME(cands, addr, now)
		if err != nil && fromImport {
			return nil, fmt.Errorf("%w; an address with an imported certificate is not looked up elsewhere", err)
		}
		if err == nil {
			return rcpt, nil
		}
		// A discovered certificate expired since: look again.
	}
	neg := negativeKey(KindSMIME, addr)
	if why, ok := r.disc.failedRecently(neg, now); ok {
		return nil, fmt.Errorf("%w: no S/MIME certificate for %s: %s (looked up less than %s ago)", ErrNoUsableKey, addr, why, r.disc.opts.NegativeTTL)
	}
	found, _, _ := r.disc.flight.Do(neg, func() (any, error) {
		d := r.disc.opts.SMIME.DiscoverSMIMEKeys(ctx, address)
		importedMeanwhile, err := r.keepDiscovered(ctx, KindSMIME, addr, d)
		switch {
		case err != nil:
			return smimeResult{err: err}, nil
		case importedMeanwhile:
			rcpt, err := r.SMIMERecipient(addr)
			return smimeResult{rcpt, err}, nil
		}
		rcpt, err := r.pickSMIME(d.Keys, addr, r.now())
		return smimeResult{rcpt, err}, nil
	})
	res := found.(smimeResult)
	return res.rcpt, res.err
}

type smimeResult struct {
	rcpt *SMIMERecipient
	err  error
}
