package discovery

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/certs"
)

// smimeCert makes a self-signed S/MIME certificate for email (EC P-256,
// keyAgreement, emailProtection).
func smimeCert(t *testing.T, email string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:   big.NewInt(time.Now().UnixNano()),
		Subject:        pkix.Name{CommonName: email},
		NotBefore:      testNow.Add(-time.Hour),
		NotAfter:       testNow.Add(365 * 24 * time.Hour),
		KeyUsage:       x509.KeyUsageKeyAgreement | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		EmailAddresses: []string{email},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestSMIMEANeedsAuthenticatedDNSSECAndAUsableCertificate(t *testing.T) {
	f := newFixture(t)
	bob := smimeCert(t, "bob@dest.test")
	f.dns.AddSMIMEA(hashedOwner("bob", "_smimecert", "dest.test"), 3, 0, 0, bob)
	// Carol publishes a PKIX-EE record (needs a trust store) and a digest.
	carol := smimeCert(t, "carol@dest.test")
	f.dns.AddSMIMEA(hashedOwner("carol", "_smimecert", "dest.test"), 1, 0, 0, carol)
	f.dns.AddSMIMEA(hashedOwner("carol", "_smimecert", "dest.test"), 3, 1, 1, make([]byte, 32))
	// Dave's record holds Mallory's certificate.
	f.dns.AddSMIMEA(hashedOwner("dave", "_smimecert", "dest.test"), 3, 0, 0, smimeCert(t, "mallory@dest.test"))
	f.res.DNSSECTrusted = true
	f.dns.SetAD(true)
	d := f.discoverer(Options{SMIMEA: true})
	ctx := context.Background()

	got := d.DiscoverSMIMEKeys(ctx, "Bob@dest.test")
	if len(got.Keys) != 1 || got.Keys[0].Address != "bob@dest.test" || got.Keys[0].Source != certs.SourceSMIMEA ||
		got.Keys[0].Trust != certs.TrustDANEEE || got.Keys[0].Kind != certs.KindSMIME || got.TTL != time.Minute {
		t.Fatalf("DANE-EE record: %+v", got)
	}
	got = d.DiscoverSMIMEKeys(ctx, "carol@dest.test")
	if len(got.Keys) != 0 || !strings.Contains(got.Tried[0], "PKIX-EE certificate serial") ||
		!strings.Contains(got.Tried[0], "no S/MIME trust store to chain it to (keys.smime_roots)") ||
		!strings.Contains(got.Tried[0], "record 3 1 1 carries no certificate") {
		t.Errorf("PKIX-EE without a trust store, and a digest: %+v", got)
	}
	got = d.DiscoverSMIMEKeys(ctx, "dave@dest.test")
	if len(got.Keys) != 0 || !strings.Contains(got.Tried[0], "issued for another address") {
		t.Errorf("a certificate for another address: %+v", got)
	}
	if got := d.DiscoverSMIMEKeys(ctx, "erin@dest.test"); got.Tried[0] != "no SMIMEA record" {
		t.Errorf("no record: %+v", got)
	}

	// PKIX-EE with a trust store: used when it chains to it, refused
	// when it does not.
	cert, err := x509.ParseCertificate(carol)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	got = f.discoverer(Options{SMIMEA: true, SMIMERoots: roots}).DiscoverSMIMEKeys(ctx, "carol@dest.test")
	if len(got.Keys) != 1 || got.Keys[0].Trust != certs.TrustPKIXEE {
		t.Errorf("PKIX-EE chaining to keys.smime_roots: %+v", got)
	}
	got = f.discoverer(Options{SMIMEA: true, SMIMERoots: x509.NewCertPool()}).DiscoverSMIMEKeys(ctx, "carol@dest.test")
	if len(got.Keys) != 0 || !strings.Contains(got.Tried[0], "not trusted") {
		t.Errorf("PKIX-EE not chaining to keys.smime_roots: %+v", got)
	}

	f.dns.SetAD(false)
	if got := d.DiscoverSMIMEKeys(ctx, "bob@dest.test"); len(got.Keys) != 0 || got.Tried[0] != "SMIMEA record not DNSSEC-authenticated, not used" {
		t.Errorf("without the AD bit: %+v", got)
	}
	f.dns.SetAD(true)
	f.res.DNSSECTrusted = false
	if got := d.DiscoverSMIMEKeys(ctx, "bob@dest.test"); len(got.Keys) != 0 || !strings.Contains(got.Tried[0], "dnssec_trusted_resolver is off") {
		t.Errorf("an untrusted resolver's AD bit: %+v", got)
	}
	if got := f.discoverer(Options{}).DiscoverSMIMEKeys(ctx, "bob@dest.test"); got.Tried[0] != "SMIMEA off" {
		t.Errorf("switched off: %+v", got)
	}
}

// countingSMIME counts the keyring's questions to the discoverer (the
// resolver has a cache of its own, so DNS queries would not tell).
type countingSMIME struct {
	*Discoverer
	asked map[string]int
}

func (c *countingSMIME) DiscoverSMIMEKeys(ctx context.Context, address string) certs.Discovered {
	c.asked[address]++
	return c.Discoverer.DiscoverSMIMEKeys(ctx, address)
}

// TestKeyringKeepsSMIMEACertificates: the smime method's side of SMIMEA
// — found certificates are kept in the key store with their source and
// trust and served from it until their TTL; a lookup that found nothing
// is remembered for NegativeTTL; an imported certificate wins and its
// address is never looked up; without the AD bit nothing is used.
func TestKeyringKeepsSMIMEACertificates(t *testing.T) {
	f := newFixture(t)
	f.res.DNSSECTrusted = true
	f.dns.SetAD(true)
	f.dns.AddSMIMEA(hashedOwner("bob", "_smimecert", "dest.test"), 3, 0, 0, smimeCert(t, "bob@dest.test"))
	f.dns.AddSMIMEA(hashedOwner("carol", "_smimecert", "dest.test"), 3, 0, 0, smimeCert(t, "carol@dest.test"))
	d := &countingSMIME{Discoverer: f.discoverer(Options{SMIMEA: true}), asked: map[string]int{}}
	now := testNow
	ring := certs.NewDiscoveringKeyring(certs.NewSpoolKeyStore(openSpool(t)), func() time.Time { return now }, d,
		certs.DiscoveryOptions{SMIME: d, NegativeTTL: time.Minute, TTL: time.Hour})
	ctx := context.Background()

	for range 3 {
		r, err := ring.FindSMIMERecipient(ctx, "bob@dest.test")
		if err != nil || r.Key.Source != certs.SourceSMIMEA || r.Key.Trust != certs.TrustDANEEE || r.Cert.EmailAddresses[0] != "bob@dest.test" {
			t.Fatalf("FindSMIMERecipient(bob) = %+v, %v", r, err)
		}
	}
	if d.asked["bob@dest.test"] != 1 {
		t.Errorf("bob looked up %d times for three messages, want 1", d.asked["bob@dest.test"])
	}
	if keys, _ := ring.KeysFor("bob@dest.test"); len(keys) != 1 || keys[0].Source != "smimea" || keys[0].Until.IsZero() {
		t.Errorf("kept in the store: %+v", keys)
	}

	for range 3 {
		_, err := ring.FindSMIMERecipient(ctx, "erin@dest.test")
		if !errors.Is(err, certs.ErrNoUsableKey) || !strings.Contains(err.Error(), "no S/MIME certificate for erin@dest.test: no SMIMEA record") {
			t.Fatalf("erin: %v", err)
		}
	}
	if d.asked["erin@dest.test"] != 1 {
		t.Errorf("erin looked up %d times within NegativeTTL, want 1", d.asked["erin@dest.test"])
	}
	f.dns.AddSMIMEA(hashedOwner("erin", "_smimecert", "dest.test"), 3, 0, 0, smimeCert(t, "erin@dest.test"))
	now = now.Add(time.Minute)
	if r, err := ring.FindSMIMERecipient(ctx, "erin@dest.test"); err != nil || r.Key.Source != certs.SourceSMIMEA {
		t.Errorf("erin after NegativeTTL, record published: %+v, %v", r, err)
	}

	// An imported certificate wins: carol's record is never asked for.
	imported := smimeCert(t, "carol@dest.test")
	if _, err := ring.ImportKeys(imported); err != nil {
		t.Fatal(err)
	}
	r, err := ring.FindSMIMERecipient(ctx, "carol@dest.test")
	if err != nil || r.Key.Source != certs.SourceImport || !bytes.Equal(r.Cert.Raw, imported) || d.asked["carol@dest.test"] != 0 {
		t.Errorf("carol with an imported certificate: %+v, %v, asked %d", r, err, d.asked["carol@dest.test"])
	}

	// Without the AD bit a record proves nothing.
	f.dns.AddSMIMEA(hashedOwner("frank", "_smimecert", "dest.test"), 3, 0, 0, smimeCert(t, "frank@dest.test"))
	f.dns.SetAD(false)
	if _, err := ring.FindSMIMERecipient(ctx, "frank@dest.test"); !errors.Is(err, certs.ErrNoUsableKey) || !strings.Contains(err.Error(), "not DNSSEC-authenticated") {
		t.Errorf("frank without the AD bit: %v", err)
	}

	// Past its TTL, a kept certificate is looked up again.
	f.dns.SetAD(true)
	now = now.Add(2 * time.Hour)
	if _, err := ring.FindSMIMERecipient(ctx, "bob@dest.test"); err != nil || d.asked["bob@dest.test"] != 2 {
		t.Errorf("bob past the TTL: %v, asked %d", err, d.asked["bob@dest.test"])
	}
}
