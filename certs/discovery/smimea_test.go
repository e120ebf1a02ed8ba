package discovery

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"
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
	f.dns.AddSMIMEA(hashedOwner("carol", "_smimecert", "dest.test"), 1, 0, 0, smimeCert(t, "carol@dest.test"))
	f.dns.AddSMIMEA(hashedOwner("carol", "_smimecert", "dest.test"), 3, 1, 1, make([]byte, 32))
	// Dave's record holds Mallory's certificate.
	f.dns.AddSMIMEA(hashedOwner("dave", "_smimecert", "dest.test"), 3, 0, 0, smimeCert(t, "mallory@dest.test"))
	f.res.DNSSECTrusted = true
	f.dns.SetAD(true)
	d := f.discoverer(Options{SMIMEA: true})
	ctx := context.Background()

	got := d.DiscoverSMIME(ctx, "Bob@dest.test")
	if len(got.Certs) != 1 || got.Certs[0].EmailAddresses[0] != "bob@dest.test" || got.TTL != time.Minute {
		t.Fatalf("DANE-EE record: %+v", got)
	}
	got = d.DiscoverSMIME(ctx, "carol@dest.test")
	if len(got.Certs) != 0 || !strings.Contains(got.Tried[0], "not trusted") || !strings.Contains(got.Tried[0], "record 3 1 1 carries no certificate") {
		t.Errorf("PKIX-EE without a trust store, and a digest: %+v", got)
	}
	got = d.DiscoverSMIME(ctx, "dave@dest.test")
	if len(got.Certs) != 0 || !strings.Contains(got.Tried[0], "issued for another address") {
		t.Errorf("a certificate for another address: %+v", got)
	}
	if got := d.DiscoverSMIME(ctx, "erin@dest.test"); got.Tried[0] != "no SMIMEA record" {
		t.Errorf("no record: %+v", got)
	}

	f.dns.SetAD(false)
	if got := d.DiscoverSMIME(ctx, "bob@dest.test"); len(got.Certs) != 0 || got.Tried[0] != "SMIMEA record not DNSSEC-authenticated, not used" {
		t.Errorf("without the AD bit: %+v", got)
	}
	f.dns.SetAD(true)
	f.res.DNSSECTrusted = false
	if got := d.DiscoverSMIME(ctx, "bob@dest.test"); len(got.Certs) != 0 || !strings.Contains(got.Tried[0], "dnssec_trusted_resolver is off") {
		t.Errorf("an untrusted resolver's AD bit: %+v", got)
	}
	if got := f.discoverer(Options{}).DiscoverSMIME(ctx, "bob@dest.test"); got.Tried[0] != "SMIMEA off" {
		t.Errorf("switched off: %+v", got)
	}
}
