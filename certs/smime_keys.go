package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// refusePrivate is what an admin reads when a file holds a private key.
const refusePrivate = "sealgate only takes recipients' certificates and never holds their secrets"

var oidCMSSignedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}

// looksLikeSMIME tells certificate material (PEM other than OpenPGP
// armor, or DER, which starts with a SEQUENCE) from OpenPGP. A binary
// OpenPGP key block starts with a public key packet tag (0x99, 0xc6,
// …), never 0x30.
func looksLikeSMIME(data []byte) bool {
	trimmed := bytes.TrimSpace(data)
	if bytes.Contains(trimmed, []byte("-----BEGIN PGP ")) {
		return false
	}
	return bytes.Contains(trimmed, []byte("-----BEGIN ")) || (len(trimmed) > 0 && trimmed[0] == 0x30)
}

// ParseSMIME reads S/MIME recipient certificates — PEM (one or more
// CERTIFICATE or PKCS7 blocks), DER, or a DER PKCS #7 certs-only bundle
// (.p7b, .p7c) — and returns one Key per (rfc822Name, certificate), each
// with the certificate's DER in Data. CA certificates in a bundle (the
// chain that came with a recipient's certificate) are not recipients
// and are passed over; imported certificates need no chain.
//
// It refuses the whole input, storing nothing, when any recipient
// certificate in it is unusable now (VerifySMIMERecipient as an
// explicit import: expired or not yet valid, a key usage or extended
// key usage that does not allow email encryption, no rfc822Name, a key
// we do not encrypt to), when it holds a private key (PEM PRIVATE KEY
// blocks, DER private keys, PKCS #12 files: we never hold recipients'
// secrets), or when it is not certificate material at all. Errors wrap
// ErrBadKey.
func ParseSMIME(data []byte, now time.Time) ([]Key, error) {
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("%w: larger than %d MiB", ErrBadKey, maxKeyFile>>20)
	}
	ders, err := smimeCertificateDERs(data)
	if err != nil {
		return nil, err
	}
	var keys []Key
	seen := map[string]bool{}
	recipients := 0
	for i, der := range ders {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: certificate %d: not a valid X.509 certificate: %v", ErrBadKey, i+1, err)
		}
		if cert.IsCA {
			continue
		}
		recipients++
		ks, err := smimeEntries(cert, now)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
		}
		for _, k := range ks {
			if id := k.Address + "\x00" + k.Fingerprint; !seen[id] {
				seen[id] = true
				keys = append(keys, k)
			}
		}
	}
	if recipients == 0 {
		return nil, fmt.Errorf("%w: only CA certificates, no recipient certificate; export the correspondent's own certificate", ErrBadKey)
	}
	return keys, nil
}

// smimeCertificateDERs takes the certificates out of PEM, DER or a
// PKCS #7 bundle, refusing private keys wherever they appear.
func smimeCertificateDERs(data []byte) ([][]byte, error) {
	trimmed := bytes.TrimSpace(data)
	if !bytes.Contains(trimmed, []byte("-----BEGIN ")) {
		// DER is binary: its last byte may well be 0x20 or 0x0a, so
		// only the leading side is trimmed (a signature ends it).
		return smimeDERCertificates(bytes.TrimLeft(data, " \t\r\n"))
	}
	var ders [][]byte
	rest := trimmed
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		switch t := block.Type; {
		case strings.Contains(t, "PRIVATE KEY"):
			return nil, fmt.Errorf("%w: this file holds a private key (PEM %s); %s (export the certificate alone)", ErrBadKey, t, refusePrivate)
		case t == "CERTIFICATE" || t == "X509 CERTIFICATE":
			ders = append(ders, block.Bytes)
		case t == "PKCS7" || t == "CMS":
			bundle, err := smimeBundleCertificates(block.Bytes)
			if err != nil {
				return nil, err
			}
			ders = append(ders, bundle...)
		case t == "PUBLIC KEY":
			return nil, fmt.Errorf("%w: a bare public key names no address; import the certificate", ErrBadKey)
		case t == "CERTIFICATE REQUEST" || t == "NEW CERTIFICATE REQUEST":
			return nil, fmt.Errorf("%w: a certificate request, not a certificate", ErrBadKey)
		default:
			return nil, fmt.Errorf("%w: PEM %q block; want CERTIFICATE or PKCS7", ErrBadKey, t)
		}
	}
	if len(ders) == 0 {
		return nil, fmt.Errorf("%w: no PEM certificate found", ErrBadKey)
	}
	return ders, nil
}

// smimeDERCertificates reads one DER structure: a certificate, a PKCS #7
// bundle, or (refused) a private key or PKCS #12 file.
func smimeDERCertificates(der []byte) ([][]byte, error) {
	if _, err := x509.ParseCertificate(der); err == nil {
		return [][]byte{der}, nil
	}
	if smimeIsPrivateKey(der) {
		return nil, fmt.Errorf("%w: this file holds a private key (DER); %s (export the certificate alone)", ErrBadKey, refusePrivate)
	}
	if smimeIsPKCS12(der) {
		return nil, fmt.Errorf("%w: a PKCS #12 file (.p12/.pfx) carries the private key; %s (export the certificate alone, e.g. openssl pkcs12 -nokeys)", ErrBadKey, refusePrivate)
	}
	certs, err := smimeBundleCertificates(der)
	if errors.Is(err, errNotContentInfo) {
		return nil, fmt.Errorf("%w: neither an OpenPGP public key nor an S/MIME certificate (PEM, DER or PKCS #7)", ErrBadKey)
	}
	return certs, err
}

// errNotContentInfo: the DER is no ContentInfo at all, so it is no
// PKCS #7 bundle either.
var errNotContentInfo = errors.New("not a DER ContentInfo")

func smimeIsPrivateKey(der []byte) bool {
	if _, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		return true
	}
	if _, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return true
	}
	_, err := x509.ParseECPrivateKey(der)
	return err == nil
}

// smimeIsPKCS12 recognises a PFX (RFC 7292 §4): SEQUENCE { version 3,
// authSafe ContentInfo, … }.
func smimeIsPKCS12(der []byte) bool {
	in := cryptobyte.String(der)
	var pfx, authSafe cryptobyte.String
	var version int64
	var contentType asn1.ObjectIdentifier
	return in.ReadASN1(&pfx, cbasn1.SEQUENCE) && pfx.ReadASN1Integer(&version) && version == 3 &&
		pfx.ReadASN1(&authSafe, cbasn1.SEQUENCE) && authSafe.ReadASN1ObjectIdentifier(&contentType)
}

// smimeBundleCertificates returns the certificates of a DER PKCS #7 /
// CMS SignedData (RFC 5652 §5.1), the certs-only form that .p7b and
// .p7c files and `openssl crl2pkcs7 -nocrl` write. Other certificate
// choices (attribute certificates and the like) are passed over.
func smimeBundleCertificates(der []byte) ([][]byte, error) {
	notBundle := func(why string) error {
		return fmt.Errorf("%w: not a PKCS #7 certificate bundle: %s", ErrBadKey, why)
	}
	in := cryptobyte.String(der)
	var ci, explicit, sd cryptobyte.String
	var contentType asn1.ObjectIdentifier
	if !in.ReadASN1(&ci, cbasn1.SEQUENCE) || !in.Empty() || !ci.ReadASN1ObjectIdentifier(&contentType) {
		return nil, fmt.Errorf("%w: %w (a BER bundle is not read; convert it with openssl pkcs7 -print_certs)", ErrBadKey, errNotContentInfo)
	}
	if !contentType.Equal(oidCMSSignedData) {
		return nil, notBundle("content type " + contentType.String() + ", want signedData")
	}
	var version int64
	if !ci.ReadASN1(&explicit, cbasn1.Tag(0).Constructed().ContextSpecific()) || !explicit.ReadASN1(&sd, cbasn1.SEQUENCE) ||
		!sd.ReadASN1Integer(&version) || !sd.SkipASN1(cbasn1.SET) || !sd.SkipASN1(cbasn1.SEQUENCE) {
		return nil, notBundle("malformed SignedData")
	}
	var set cryptobyte.String
	var present bool
	if !sd.ReadOptionalASN1(&set, &present, cbasn1.Tag(0).Constructed().ContextSpecific()) {
		return nil, notBundle("malformed certificate set")
	}
	var ders [][]byte
	for !set.Empty() {
		var el cryptobyte.String
		var tag cbasn1.Tag
		if !set.ReadAnyASN1Element(&el, &tag) {
			return nil, notBundle("malformed certificate set")
		}
		if tag == cbasn1.SEQUENCE {
			ders = append(ders, el)
		}
	}
	if len(ders) == 0 {
		return nil, fmt.Errorf("%w: the PKCS #7 bundle holds no certificate", ErrBadKey)
	}
	return ders, nil
}

// smimeEntries checks one recipient certificate as an explicit import
// and makes its store entries, one per address.
func smimeEntries(cert *x509.Certificate, now time.Time) ([]Key, error) {
	if err := VerifySMIMERecipient(cert, SMIMERecipientCheck{Now: now, Imported: true}); err != nil {
		return nil, errors.New(oneLine(err))
	}
	var keys []Key
	seen := map[string]bool{}
	for _, email := range cert.EmailAddresses {
		addr, err := KeyAddress(email)
		if err != nil || seen[addr] {
			continue
		}
		seen[addr] = true
		keys = append(keys, smimeKey(cert, addr))
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("certificate %s (serial %s): %v: none of %s is a usable address",
			smimeCertName(cert), SMIMESerial(cert), ErrSMIMECertNoAddress, strings.Join(cert.EmailAddresses, ", "))
	}
	return keys, nil
}

// SMIMESerial writes a certificate's serial number as the key store
// and the attempt records show it: upper-case hex, as openssl prints it
// (whole bytes, without the colons).
func SMIMESerial(cert *x509.Certificate) string {
	n := cert.SerialNumber
	sign := ""
	if n.Sign() < 0 {
		sign = "-"
	}
	b := n.Bytes()
	if len(b) == 0 {
		b = []byte{0}
	}
	return sign + strings.ToUpper(hex.EncodeToString(b))
}

// smimeAlgorithm names a certificate's key for listings: "RSA-2048",
// "EC-P256".
func smimeAlgorithm(cert *x509.Certificate) string {
	switch pub := cert.PublicKey.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d", pub.N.BitLen())
	case *ecdsa.PublicKey:
		return "EC-" + strings.ReplaceAll(pub.Curve.Params().Name, "-", "")
	}
	return cert.PublicKeyAlgorithm.String()
}

// oneLine flattens joined errors (one per line) into one line, as a
// history entry and a CLI message want them.
func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}

// SMIMERecipient is a stored certificate, checked and ready to encrypt
// to.
type SMIMERecipient struct {
	Key  Key // the store entry, without Data
	Cert *x509.Certificate
}

// SMIMERecipient returns the newest certificate of address that may be
// encrypted to now, from the store alone: imported certificates if
// there are any, else discovered ones until they are due for a new
// lookup (VerifySMIMERecipient: validity, key usage, email protection,
// the address; an imported certificate, or one from a DANE-EE SMIMEA
// record, needs no chain; a PKIX-EE one must chain to the S/MIME trust
// store). The error wraps ErrNoUsableKey and says why none can be: none
// stored, or each expired, refused or unreadable.
func (r *Keyring) SMIMERecipient(address string) (*SMIMERecipient, error) {
	keys, err := r.store.Lookup(address)
	if err != nil {
		return nil, err
	}
	addr, err := KeyAddress(address)
	if err != nil {
		return nil, err
	}
	now := r.now()
	keys, _ = r.candidates(keys, KindSMIME, now)
	return r.pickSMIME(keys, addr, now)
}

// pickSMIME returns the first of keys that may be encrypted to now.
func (r *Keyring) pickSMIME(keys []Key, addr string, now time.Time) (*SMIMERecipient, error) {
	var roots *x509.CertPool
	if r.disc != nil {
		roots = r.disc.opts.SMIMERoots
	}
	var why []string
	for _, k := range keys {
		if k.Kind != KindSMIME {
			continue
		}
		cert, err := x509.ParseCertificate(k.Data)
		if err != nil {
			why = append(why, "certificate "+k.Fingerprint+" unreadable")
			continue
		}
		check := SMIMERecipientCheck{Now: now, Roots: roots, Imported: imported(k) || k.Trust == TrustDANEEE, Address: smimeCertAddress(cert, addr)}
		if err := VerifySMIMERecipient(cert, check); err != nil {
			why = append(why, oneLine(err))
			continue
		}
		k.Data = nil
		return &SMIMERecipient{Key: k, Cert: cert}, nil
	}
	if len(why) == 0 {
		return nil, fmt.Errorf("%w: no S/MIME certificate for %s", ErrNoUsableKey, addr)
	}
	return nil, fmt.Errorf("%w: no usable S/MIME certificate for %s (%s)", ErrNoUsableKey, addr, joinReasons(why))
}

// smimeCertAddress is the certificate's own spelling of addr (the
// store keeps the KeyAddress form), or addr when it names none — which
// VerifySMIMERecipient then refuses.
func smimeCertAddress(cert *x509.Certificate, addr string) string {
	for _, email := range cert.EmailAddresses {
		if a, err := KeyAddress(email); err == nil && a == addr {
			return email
		}
	}
	return addr
}
