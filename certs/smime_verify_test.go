package certs

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

func TestVerifySMIMERecipient(t *testing.T) {
	root := smimeTestRoot(t, "partner S/MIME CA")
	other := smimeTestRoot(t, "someone else's CA")
	roots := x509.NewCertPool()
	roots.AddCert(root.cert)
	now := time.Now()
	issued := func(spec smimeCertSpec) smimeCertSpec { spec.issuer = root; return spec }

	cases := []struct {
		name     string
		spec     smimeCertSpec
		imported bool
		noRoots  bool
		address  string
		want     []error // nil: accepted
		wantText string
	}{
		{name: "rsa from the trusted CA", spec: issued(smimeCertSpec{}), address: "Bob@Partner.example"},
		{name: "ec p-256 from the trusted CA", spec: issued(smimeCertSpec{key: "p256"})},
		{name: "ec p-384 from the trusted CA", spec: issued(smimeCertSpec{key: "p384"})},
		{name: "no key usage extension", spec: issued(smimeCertSpec{noKeyUsage: true})},
		{name: "no extended key usage extension", spec: issued(smimeCertSpec{noExtUsage: true})},
		{name: "anyExtendedKeyUsage", spec: issued(smimeCertSpec{extUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})},
		{name: "expired", spec: issued(smimeCertSpec{notBefore: now.Add(-48 * time.Hour), notAfter: now.Add(-time.Hour)}),
			want: []error{ErrSMIMECertExpired}},
		{name: "expired even when imported", imported: true,
			spec: smimeCertSpec{notBefore: now.Add(-48 * time.Hour), notAfter: now.Add(-time.Hour)}, want: []error{ErrSMIMECertExpired}},
		{name: "not yet valid", spec: issued(smimeCertSpec{notBefore: now.Add(time.Hour), notAfter: now.Add(48 * time.Hour)}),
			want: []error{ErrSMIMECertNotYetValid}},
		{name: "no email", spec: issued(smimeCertSpec{emails: []string{}}), want: []error{ErrSMIMECertNoAddress}},
		{name: "email only in the subject DN", spec: issued(smimeCertSpec{emails: []string{}, subjectDN: "bob@partner.example"}),
			want: []error{ErrSMIMECertNoAddress}, wantText: "subject DN"},
		{name: "another address", spec: issued(smimeCertSpec{}), address: "eve@partner.example",
			want: []error{ErrSMIMECertWrongAddress}, wantText: "bob@partner.example, not eve@partner.example"},
		{name: "rsa for signing only", spec: issued(smimeCertSpec{keyUsage: x509.KeyUsageDigitalSignature}),
			want: []error{ErrSMIMECertKeyUsage}, wantText: "keyEncipherment"},
		{name: "ec with keyEncipherment instead of keyAgreement", spec: issued(smimeCertSpec{key: "p256", keyUsage: x509.KeyUsageKeyEncipherment}),
			want: []error{ErrSMIMECertKeyUsage}, wantText: "keyAgreement"},
		{name: "TLS server certificate", spec: issued(smimeCertSpec{extUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}),
			want: []error{ErrSMIMECertExtKeyUsage}},
		{name: "rsa-1024", spec: issued(smimeCertSpec{key: "rsa1024"}), want: []error{ErrSMIMEUnsupportedKey}},
		{name: "ed25519", spec: issued(smimeCertSpec{key: "ed25519", keyUsage: x509.KeyUsageDigitalSignature}),
			want: []error{ErrSMIMEUnsupportedKey}},
		{name: "self-signed", spec: smimeCertSpec{}, want: []error{ErrSMIMECertUntrusted}},
		{name: "self-signed, imported", spec: smimeCertSpec{}, imported: true},
		{name: "another CA", spec: smimeCertSpec{issuer: other}, want: []error{ErrSMIMECertUntrusted}},
		{name: "another CA, imported", spec: smimeCertSpec{issuer: other}, imported: true},
		{name: "no trust store", spec: issued(smimeCertSpec{}), noRoots: true, want: []error{ErrSMIMECertUntrusted}, wantText: "no S/MIME trust store"},
		{name: "every reason at once", spec: smimeCertSpec{emails: []string{}, keyUsage: x509.KeyUsageDigitalSignature},
			want: []error{ErrSMIMECertNoAddress, ErrSMIMECertKeyUsage, ErrSMIMECertUntrusted}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cert := smimeTestCert(t, tc.spec)
			check := SMIMERecipientCheck{Now: now, Roots: roots, Imported: tc.imported, Address: tc.address}
			if tc.noRoots {
				check.Roots = nil
			}
			err := VerifySMIMERecipient(cert, check)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, want := range tc.want {
				if !errors.Is(err, want) {
					t.Errorf("error %q is not %q", err, want)
				}
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("error %q does not say %q", err, tc.wantText)
			}
			if !strings.Contains(err.Error(), cert.SerialNumber.Text(16)) {
				t.Errorf("error %q does not name the certificate", err)
			}
		})
	}
}

// smimeCapabilitiesExt is an smimeCapabilities extension (RFC 4262)
// listing oids.
func smimeCapabilitiesExt(oids ...asn1.ObjectIdentifier) pkix.Extension {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, oid := range oids {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oid) })
		}
	})
	return pkix.Extension{Id: oidSMIMECapabilities, Value: b.BytesOrPanic()}
}

func TestSMIMECipherFor(t *testing.T) {
	withCaps := func(ext ...pkix.Extension) *x509.Certificate {
		return smimeTestCert(t, smimeCertSpec{key: "p256", extra: ext})
	}
	gcm := withCaps(smimeCapabilitiesExt(oidAES256GCM, oidAES256CBC))
	cbcOnly := withCaps(smimeCapabilitiesExt(oidAES256CBC))
	none := withCaps()
	broken := withCaps(pkix.Extension{Id: oidSMIMECapabilities, Value: []byte{0x30, 0x03, 0x02}})
	for _, tc := range []struct {
		name  string
		certs []*x509.Certificate
		want  SMIMECipher
	}{
		{"all list GCM", []*x509.Certificate{gcm, gcm}, SMIMEAES256GCM},
		{"one lists only CBC", []*x509.Certificate{gcm, cbcOnly}, SMIMEAES256CBC},
		{"one says nothing", []*x509.Certificate{gcm, none}, SMIMEAES256CBC},
		{"malformed extension", []*x509.Certificate{broken}, SMIMEAES256CBC},
		{"no recipients", nil, SMIMEAES256CBC},
	} {
		if got := SMIMECipherFor(tc.certs); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
