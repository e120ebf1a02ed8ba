package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"
)

// smimeCertSpec describes a certificate for the table tests; the zero
// value is a good RSA-2048 S/MIME encryption certificate for
// bob@partner.example, valid now, issued by issuer (self-signed when nil).
type smimeCertSpec struct {
	key        string // "rsa2048" (default), "rsa1024", "p256", "p384", "ed25519"
	emails     []string
	subjectDN  string // a legacy emailAddress attribute in the subject
	notBefore  time.Time
	notAfter   time.Time
	keyUsage   x509.KeyUsage // 0: the right one for the key
	noKeyUsage bool
	extUsage   []x509.ExtKeyUsage // nil: emailProtection
	noExtUsage bool
	extra      []pkix.Extension
	issuer     *smimeTestIssuer
}

type smimeTestIssuer struct {
	cert *x509.Certificate
	key  crypto.Signer
}

var smimeOIDEmailAddress = []int{1, 2, 840, 113549, 1, 9, 1}

func smimeTestKey(t testing.TB, kind string) crypto.Signer {
	t.Helper()
	var key crypto.Signer
	var err error
	switch kind {
	case "", "rsa2048":
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	case "rsa1024":
		key, err = rsa.GenerateKey(rand.Reader, 1024)
	case "p256":
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "p384":
		key, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ed25519":
		_, key, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("unknown key kind %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// smimeTestRoot is a CA for the table tests.
func smimeTestRoot(t testing.TB, name string) *smimeTestIssuer {
	t.Helper()
	key := smimeTestKey(t, "p256")
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
	}
	return &smimeTestIssuer{cert: smimeCreateCert(t, tmpl, tmpl, key, key), key: key}
}

func smimeTestCert(t testing.TB, spec smimeCertSpec) *x509.Certificate {
	t.Helper()
	key := smimeTestKey(t, spec.key)
	if spec.emails == nil {
		spec.emails = []string{"bob@partner.example"}
	}
	if spec.notBefore.IsZero() {
		spec.notBefore = time.Now().Add(-time.Hour)
	}
	if spec.notAfter.IsZero() {
		spec.notAfter = time.Now().Add(24 * time.Hour)
	}
	if spec.keyUsage == 0 && !spec.noKeyUsage {
		spec.keyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
		if _, ok := key.(*ecdsa.PrivateKey); ok {
			spec.keyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement
		}
	}
	if spec.extUsage == nil && !spec.noExtUsage {
		spec.extUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}
	}
	tmpl := &x509.Certificate{
		SerialNumber: smimeSerial(), Subject: pkix.Name{CommonName: "Bob Partner"},
		NotBefore: spec.notBefore, NotAfter: spec.notAfter,
		KeyUsage: spec.keyUsage, ExtKeyUsage: spec.extUsage,
		EmailAddresses: spec.emails, BasicConstraintsValid: true, ExtraExtensions: spec.extra,
	}
	if spec.subjectDN != "" {
		tmpl.Subject.ExtraNames = []pkix.AttributeTypeAndValue{{Type: smimeOIDEmailAddress, Value: spec.subjectDN}}
	}
	parent, signer := tmpl, key
	if spec.issuer != nil {
		parent, signer = spec.issuer.cert, spec.issuer.key
	}
	return smimeCreateCert(t, tmpl, parent, key, signer)
}

func smimeCreateCert(t testing.TB, tmpl, parent *x509.Certificate, key, signer crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func smimeSerial() *big.Int {
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	return serial.Add(serial, big.NewInt(2))
}
