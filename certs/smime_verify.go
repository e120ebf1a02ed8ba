package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Reasons VerifySMIMERecipient refuses a certificate; several may come
// back at once (errors.Join), each testable with errors.Is.
var (
	ErrSMIMECertNotYetValid = errors.New("smime certificate: not valid yet")
	ErrSMIMECertExpired     = errors.New("smime certificate: expired")
	// ErrSMIMECertKeyUsage: the key usage extension is present and lacks
	// keyEncipherment (RSA) or keyAgreement (EC).
	ErrSMIMECertKeyUsage = errors.New("smime certificate: key usage does not allow encryption")
	// ErrSMIMECertExtKeyUsage: the extended key usage extension is
	// present and lists neither emailProtection nor anyExtendedKeyUsage.
	ErrSMIMECertExtKeyUsage = errors.New("smime certificate: extended key usage does not allow email protection")
	// ErrSMIMECertNoAddress: no rfc822Name in the subject alternative
	// name.
	ErrSMIMECertNoAddress = errors.New("smime certificate: no email address in subjectAltName")
	// ErrSMIMECertWrongAddress: the certificate does not name the address
	// it is meant to be used for.
	ErrSMIMECertWrongAddress = errors.New("smime certificate: issued for another address")
	// ErrSMIMECertUntrusted: no chain to the S/MIME trust store, and the
	// certificate was not imported explicitly.
	ErrSMIMECertUntrusted = errors.New("smime certificate: not trusted")
)

// SMIMERecipientCheck is what VerifySMIMERecipient checks a certificate
// against.
type SMIMERecipientCheck struct {
	// Now is the time of use; zero means time.Now().
	Now time.Time
	// Roots is the S/MIME trust store. Nil trusts nothing (not the
	// system's TLS roots): only imported certificates are then usable.
	Roots *x509.CertPool
	// Intermediates are CA certificates that may complete a chain.
	Intermediates *x509.CertPool
	// Imported says an admin imported this very certificate: trust
	// comes from that act, so no chain is required. Every other check
	// still applies.
	Imported bool
	// Address, when set, must be one of the certificate's rfc822Names
	// (compared without regard to case).
	Address string
}

var oidExtensionKeyUsage = asn1.ObjectIdentifier{2, 5, 29, 15}

// VerifySMIMERecipient reports whether mail may be encrypted to cert
// (RFC 8550 §4.4, RFC 8551 §4): it must be valid at check.Now; carry a
// key we encrypt to (RSA of 2048 bits or more, EC on P-256, P-384 or
// P-521); allow that key's use (keyEncipherment for RSA, keyAgreement for
// EC) when it has a key usage extension; allow email protection
// (emailProtection or anyExtendedKeyUsage) when it has an extended key
// usage extension — a certificate without one is not restricted; name an
// address as an rfc822Name in its subject alternative name (a legacy
// emailAddress in the subject DN alone is not enough); and chain to
// check.Roots, for email protection, unless check.Imported. Revocation
// (CRL, OCSP) is not checked.
//
// It returns nil or every reason at once, joined.
func VerifySMIMERecipient(cert *x509.Certificate, check SMIMERecipientCheck) error {
	now := check.Now
	if now.IsZero() {
		now = time.Now()
	}
	var errs []error
	if now.Before(cert.NotBefore) {
		errs = append(errs, fmt.Errorf("%w: from %s", ErrSMIMECertNotYetValid, cert.NotBefore.UTC().Format(time.RFC3339)))
	}
	if now.After(cert.NotAfter) {
		errs = append(errs, fmt.Errorf("%w on %s", ErrSMIMECertExpired, cert.NotAfter.UTC().Format(time.RFC3339)))
	}

	hasKeyUsage := false
	for _, ext := range cert.Extensions {
		hasKeyUsage = hasKeyUsage || ext.Id.Equal(oidExtensionKeyUsage)
	}
	switch pub := cert.PublicKey.(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < smimeMinRSABits {
			errs = append(errs, fmt.Errorf("%w: RSA key of %d bits (at least %d)", ErrSMIMEUnsupportedKey, pub.N.BitLen(), smimeMinRSABits))
		}
		if hasKeyUsage && cert.KeyUsage&x509.KeyUsageKeyEncipherment == 0 {
			errs = append(errs, fmt.Errorf("%w: an RSA key needs keyEncipherment", ErrSMIMECertKeyUsage))
		}
	case *ecdsa.PublicKey:
		if c := pub.Curve; c != elliptic.P256() && c != elliptic.P384() && c != elliptic.P521() {
			errs = append(errs, fmt.Errorf("%w: EC curve %s (P-256, P-384 or P-521)", ErrSMIMEUnsupportedKey, c.Params().Name))
		}
		if hasKeyUsage && cert.KeyUsage&x509.KeyUsageKeyAgreement == 0 {
			errs = append(errs, fmt.Errorf("%w: an EC key needs keyAgreement", ErrSMIMECertKeyUsage))
		}
	default:
		errs = append(errs, fmt.Errorf("%w: %v", ErrSMIMEUnsupportedKey, cert.PublicKeyAlgorithm))
	}

	if len(cert.ExtKeyUsage) > 0 || len(cert.UnknownExtKeyUsage) > 0 {
		allowed := false
		for _, u := range cert.ExtKeyUsage {
			allowed = allowed || u == x509.ExtKeyUsageEmailProtection || u == x509.ExtKeyUsageAny
		}
		if !allowed {
			errs = append(errs, ErrSMIMECertExtKeyUsage)
		}
	}

	switch {
	case len(cert.EmailAddresses) == 0 && smimeLegacySubjectAddress(cert) != "":
		errs = append(errs, fmt.Errorf("%w: %s is only in the subject DN's emailAddress attribute (RFC 8550 §3 wants an rfc822Name)",
			ErrSMIMECertNoAddress, smimeLegacySubjectAddress(cert)))
	case len(cert.EmailAddresses) == 0:
		errs = append(errs, ErrSMIMECertNoAddress)
	case check.Address != "":
		found := false
		for _, a := range cert.EmailAddresses {
			found = found || strings.EqualFold(a, check.Address)
		}
		if !found {
			errs = append(errs, fmt.Errorf("%w: %s, not %s", ErrSMIMECertWrongAddress, strings.Join(cert.EmailAddresses, ", "), check.Address))
		}
	}

	if !check.Imported {
		if check.Roots == nil {
			errs = append(errs, fmt.Errorf("%w: no S/MIME trust store is configured and it was not imported", ErrSMIMECertUntrusted))
		} else if _, err := cert.Verify(x509.VerifyOptions{
			Roots: check.Roots, Intermediates: check.Intermediates, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		}); err != nil {
			errs = append(errs, fmt.Errorf("%w: %v", ErrSMIMECertUntrusted, err))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("certificate %s (serial %s): %w", smimeCertName(cert), cert.SerialNumber.Text(16), errors.Join(errs...))
}

var oidAttributeEmailAddress = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}

// smimeLegacySubjectAddress is the PKCS #9 emailAddress in the subject
// DN, if any.
func smimeLegacySubjectAddress(cert *x509.Certificate) string {
	for _, atv := range cert.Subject.Names {
		if atv.Type.Equal(oidAttributeEmailAddress) {
			if s, ok := atv.Value.(string); ok {
				return s
			}
		}
	}
	return ""
}

// SMIMECapabilitiesListGCM reports whether an SMIMECapabilities value
// lists AES-256-GCM. The value is the same in the certificate extension
// of RFC 4262 and in the signed attribute that a partner's client puts
// on every signed message (RFC 8551 §2.5.2): a key store may keep the
// latter and ask here.
func SMIMECapabilitiesListGCM(der []byte) (bool, error) {
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return false, errors.New("smime: SMIMECapabilities is not a DER SEQUENCE")
	}
	found := false
	for !seq.Empty() {
		var capability cryptobyte.String
		var oid asn1.ObjectIdentifier
		if !seq.ReadASN1(&capability, cbasn1.SEQUENCE) || !capability.ReadASN1ObjectIdentifier(&oid) {
			return false, errors.New("smime: malformed SMIMECapability")
		}
		found = found || oid.Equal(oidAES256GCM)
	}
	return found, nil
}

// SMIMECipherFor picks the content cipher for one message to all of
// recipients: AES-256-GCM when every certificate carries an
// smimeCapabilities extension listing it, else AES-256-CBC, which every
// client reads. A malformed extension counts as not listing it.
func SMIMECipherFor(recipients []*x509.Certificate) SMIMECipher {
	if len(recipients) == 0 {
		return SMIMEAES256CBC
	}
	for _, cert := range recipients {
		gcm := false
		for _, ext := range cert.Extensions {
			if ext.Id.Equal(oidSMIMECapabilities) {
				gcm, _ = SMIMECapabilitiesListGCM(ext.Value)
			}
		}
		if !gcm {
			return SMIMEAES256CBC
		}
	}
	return SMIMEAES256GCM
}
