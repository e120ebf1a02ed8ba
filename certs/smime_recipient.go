package certs

import (
	"crypto/aes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// smimeMinRSABits is the smallest RSA key we encrypt to (RFC 8551 §4.3:
// 2048 bits or more).
const smimeMinRSABits = 2048

// smimeRecipientInfo is the RecipientInfo (RFC 5652 §6.2) that gives cert
// the content key, and its version.
func smimeRecipientInfo(cert *x509.Certificate, key []byte, transport SMIMEKeyTransport) ([]byte, int, error) {
	switch pub := cert.PublicKey.(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < smimeMinRSABits {
			return nil, 0, fmt.Errorf("%w: RSA key of %d bits (at least %d)", ErrSMIMEUnsupportedKey, pub.N.BitLen(), smimeMinRSABits)
		}
		ri, err := smimeKeyTransRecipient(cert, pub, key, transport)
		return ri, 0, err
	case *ecdsa.PublicKey:
		ri, err := smimeKeyAgreeRecipient(cert, pub, key)
		return ri, 3, err
	}
	return nil, 0, fmt.Errorf("%w: %v", ErrSMIMEUnsupportedKey, cert.PublicKeyAlgorithm)
}

// smimeKeyTransRecipient is a KeyTransRecipientInfo (RFC 5652 §6.2.1),
// version 0, naming the recipient by issuer and serial number.
func smimeKeyTransRecipient(cert *x509.Certificate, pub *rsa.PublicKey, key []byte, transport SMIMEKeyTransport) ([]byte, error) {
	var encrypted, algID []byte
	var err error
	switch transport {
	case SMIMERSAPKCS1v15:
		encrypted, err = rsa.EncryptPKCS1v15(rand.Reader, pub, key)
		algID = smimeAlgorithmID(oidRSAEncryption, func(b *cryptobyte.Builder) {
			b.AddASN1NULL()
		})
	case SMIMERSAOAEP:
		encrypted, err = rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, key, nil)
		// RSAES-OAEP-params (RFC 4055 §4.1): SHA-256, MGF1 with SHA-256,
		// the default (empty) label. SHA-2 parameters are absent (§2.1).
		sha256ID := smimeAlgorithmID(oidSHA256, nil)
		algID = smimeAlgorithmID(oidRSAESOAEP, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					b.AddBytes(sha256ID)
				})
				b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					b.AddBytes(smimeAlgorithmID(oidMGF1, func(b *cryptobyte.Builder) {
						b.AddBytes(sha256ID)
					}))
				})
			})
		})
	default:
		return nil, fmt.Errorf("smime: unknown RSA key transport %v", transport)
	}
	if err != nil {
		return nil, fmt.Errorf("RSA key transport: %w", err)
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(0)
		smimeAddIssuerAndSerial(b, cert)
		b.AddBytes(algID)
		b.AddASN1OctetString(encrypted)
	})
	return b.Bytes()
}

// smimeKeyAgreeRecipient is a KeyAgreeRecipientInfo (RFC 5652 §6.2.2,
// RFC 5753 §3.1.1): a fresh ephemeral key on the recipient's curve,
// dhSinglePass-stdDH with the ANSI X9.63 KDF, and the content key wrapped
// with AES-256 key wrap. The ephemeral private key lives only in this
// function.
func smimeKeyAgreeRecipient(cert *x509.Certificate, pub *ecdsa.PublicKey, key []byte) ([]byte, error) {
	var scheme asn1.ObjectIdentifier
	var newHash func() hash.Hash
	switch pub.Curve {
	case elliptic.P256():
		scheme, newHash = oidECDHSinglePassSHA256KDF, sha256.New
	case elliptic.P384():
		// RFC 5753 §8 pairs each curve with a hash of matching strength.
		scheme, newHash = oidECDHSinglePassSHA384KDF, sha512.New384
	case elliptic.P521():
		scheme, newHash = oidECDHSinglePassSHA512KDF, sha512.New
	default:
		return nil, fmt.Errorf("%w: EC curve %s (P-256, P-384 or P-521)", ErrSMIMEUnsupportedKey, pub.Curve.Params().Name)
	}
	recipientKey, err := pub.ECDH()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSMIMEUnsupportedKey, err)
	}
	ephemeral, err := recipientKey.Curve().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	shared, err := ephemeral.ECDH(recipientKey)
	if err != nil {
		return nil, fmt.Errorf("ECDH: %w", err)
	}
	wrapID := smimeAlgorithmID(oidAES256Wrap, nil) // RFC 5753 §7.2: AES wrap parameters absent
	kek, err := smimeX963KDF(newHash, shared, wrapID, smimeContentKeyLen)
	if err != nil {
		return nil, err
	}
	wrapped, err := smimeAESKeyWrap(kek, key)
	if err != nil {
		return nil, err
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { // [1] kari
		b.AddASN1Int64(3)
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { // originator [0] EXPLICIT
			b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { // originatorKey [1]
				// id-ecPublicKey, parameters absent: the curve is the
				// recipient's (RFC 5753 §7.1.2).
				b.AddBytes(smimeAlgorithmID(oidECPublicKey, nil))
				b.AddASN1BitString(ephemeral.PublicKey().Bytes())
			})
		})
		b.AddBytes(smimeAlgorithmID(scheme, func(b *cryptobyte.Builder) { b.AddBytes(wrapID) }))
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // RecipientEncryptedKeys
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				smimeAddIssuerAndSerial(b, cert)
				b.AddASN1OctetString(wrapped)
			})
		})
	})
	return b.Bytes()
}

// smimeAddIssuerAndSerial adds IssuerAndSerialNumber (RFC 5652 §10.2.4).
func smimeAddIssuerAndSerial(b *cryptobyte.Builder, cert *x509.Certificate) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(cert.RawIssuer)
		b.AddASN1BigInt(cert.SerialNumber)
	})
}

// smimeX963KDF derives the key-encryption key from the ECDH secret
// (RFC 5753 §7.2, ANSI X9.63 §3.6.1): Hash(Z ‖ counter ‖ SharedInfo)
// for counter = 1, 2, …, where SharedInfo is the DER of ECC-CMS-SharedInfo
// naming the wrap algorithm and the key length in bits. No ukm is sent,
// so entityUInfo is absent.
func smimeX963KDF(newHash func() hash.Hash, z, wrapID []byte, keyLen int) ([]byte, error) {
	var si cryptobyte.Builder
	si.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(wrapID)
		b.AddASN1(cbasn1.Tag(2).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { // suppPubInfo
			b.AddASN1OctetString(binary.BigEndian.AppendUint32(nil, uint32(keyLen*8)))
		})
	})
	sharedInfo, err := si.Bytes()
	if err != nil {
		return nil, err
	}
	var out []byte
	for counter := uint32(1); len(out) < keyLen; counter++ {
		h := newHash()
		h.Write(z)
		h.Write(binary.BigEndian.AppendUint32(nil, counter))
		h.Write(sharedInfo)
		out = h.Sum(out)
	}
	return out[:keyLen], nil
}

// smimeAESKeyWrap is the AES key wrap of RFC 3394 §2.2.1 with the default
// initial value.
func smimeAESKeyWrap(kek, plaintext []byte) ([]byte, error) {
	if len(plaintext)%8 != 0 || len(plaintext) < 16 {
		return nil, errors.New("smime: key wrap needs a multiple of 8 bytes, at least 16")
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	n := len(plaintext) / 8
	out := make([]byte, 8+len(plaintext))
	copy(out, []byte{0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6})
	copy(out[8:], plaintext)
	var buf [aes.BlockSize]byte
	for j := range 6 {
		for i := 1; i <= n; i++ {
			copy(buf[:8], out[:8])
			copy(buf[8:], out[8*i:8*i+8])
			block.Encrypt(buf[:], buf[:])
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(out[:8], binary.BigEndian.Uint64(buf[:8])^t)
			copy(out[8*i:8*i+8], buf[8:])
		}
	}
	return out, nil
}
