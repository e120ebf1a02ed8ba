package certs

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"slices"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// SMIMECipher is the content encryption of an S/MIME message.
type SMIMECipher int

const (
	// SMIMEAES256CBC is CMS EnvelopedData with AES-256-CBC (RFC 5652,
	// RFC 3565): what every S/MIME client since the 2000s reads, and what
	// RFC 8551 §2.7 requires receivers to support. It is the default.
	SMIMEAES256CBC SMIMECipher = iota
	// SMIMEAES256GCM is CMS AuthEnvelopedData with AES-256-GCM (RFC 5083,
	// RFC 5084): authenticated, so a bit flipped on the way is detected
	// rather than decrypted into garbage. Use it only when every recipient
	// says it can read it (SMIMEPreferredCipher).
	SMIMEAES256GCM
)

func (c SMIMECipher) String() string {
	switch c {
	case SMIMEAES256CBC:
		return "aes256-cbc"
	case SMIMEAES256GCM:
		return "aes256-gcm"
	}
	return fmt.Sprintf("SMIMECipher(%d)", int(c))
}

// SMIMEKeyTransport is how the content key reaches an RSA recipient.
// Elliptic-curve recipients always get ECDH key agreement.
type SMIMEKeyTransport int

const (
	// SMIMERSAPKCS1v15 is RSAES-PKCS1-v1_5 (RFC 8017): every client reads
	// it. It is the default for that reason alone; RFC 8551 §2.3 lists it
	// as MUST support.
	SMIMERSAPKCS1v15 SMIMEKeyTransport = iota
	// SMIMERSAOAEP is RSAES-OAEP with SHA-256 and MGF1-SHA-256 (RFC 3560,
	// RFC 8017): no padding oracle, but older Outlook builds cannot read it.
	SMIMERSAOAEP
)

func (k SMIMEKeyTransport) String() string {
	switch k {
	case SMIMERSAPKCS1v15:
		return "rsaes-pkcs1-v1_5"
	case SMIMERSAOAEP:
		return "rsaes-oaep-sha256"
	}
	return fmt.Sprintf("SMIMEKeyTransport(%d)", int(k))
}

// SMIMEOptions say how a message is encrypted. The zero value is
// AES-256-CBC EnvelopedData with PKCS #1 v1.5 key transport for RSA.
type SMIMEOptions struct {
	Cipher       SMIMECipher
	RSATransport SMIMEKeyTransport
}

// Errors returned by EncryptSMIME and BuildSMIME.
var (
	// ErrSMIMENoRecipients: there is no certificate to encrypt to.
	ErrSMIMENoRecipients = errors.New("smime: no recipient certificates")
	// ErrSMIMEUnsupportedKey: a certificate's public key is neither RSA
	// (2048 bits or more) nor ECDSA on P-256, P-384 or P-521.
	ErrSMIMEUnsupportedKey = errors.New("smime: unsupported recipient key")
)

// Object identifiers of the structures and algorithms written here.
var (
	oidCMSData                 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidCMSEnvelopedData        = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 3}
	oidCMSAuthEnvelopedData    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 23}
	oidAES256CBC               = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
	oidAES256Wrap              = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 45}
	oidAES256GCM               = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 46}
	oidRSAEncryption           = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidRSAESOAEP               = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 7}
	oidMGF1                    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 8}
	oidSHA256                  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidECPublicKey             = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidECDHSinglePassSHA256KDF = asn1.ObjectIdentifier{1, 3, 132, 1, 11, 1}
	oidECDHSinglePassSHA384KDF = asn1.ObjectIdentifier{1, 3, 132, 1, 11, 2}
	oidECDHSinglePassSHA512KDF = asn1.ObjectIdentifier{1, 3, 132, 1, 11, 3}
	oidSMIMECapabilities       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 15}
)

const (
	smimeContentKeyLen = 32 // AES-256
	smimeGCMNonceLen   = 12 // RFC 5084 §3.2: 12 octets RECOMMENDED
	smimeGCMTagLen     = 16 // full-length ICV
	smimeChunk         = 64 << 10
)

// EncryptSMIME encrypts a MIME entity (header, blank line, body; CRLF
// line ends) to every certificate in recipients and returns the DER of a
// CMS ContentInfo: EnvelopedData for SMIMEAES256CBC, AuthEnvelopedData
// for SMIMEAES256GCM. There is one RecipientInfo per certificate: key
// transport for RSA, ephemeral-static ECDH key agreement for EC.
//
// It does not judge the certificates (validity, usage, trust): that is
// VerifySMIMERecipient's job, done before.
func EncryptSMIME(recipients []*x509.Certificate, entity []byte, opts SMIMEOptions) ([]byte, error) {
	env, err := newSMIMEEnvelope(recipients, int64(len(entity)), opts)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	out.Grow(int(env.size()))
	if err := env.write(&out, [][]byte{entity}); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// smimeEnvelope is a CMS message whose every byte but the ciphertext and
// the GCM tag is known before encryption starts: DER lengths are definite,
// and the ciphertext length follows from the entity length. So the
// envelope is written as prefix, ciphertext streamed chunk by chunk,
// suffix — no copy of the ciphertext is ever held.
type smimeEnvelope struct {
	cipher    SMIMECipher
	key       []byte
	iv        []byte // CBC IV or GCM nonce
	prefix    []byte // everything up to the first ciphertext byte
	ctLen     int64  // ciphertext length without the GCM tag
	suffixLen int64  // the MAC's OCTET STRING for GCM, else 0
}

func newSMIMEEnvelope(recipients []*x509.Certificate, entityLen int64, opts SMIMEOptions) (*smimeEnvelope, error) {
	if len(recipients) == 0 {
		return nil, ErrSMIMENoRecipients
	}
	env := &smimeEnvelope{cipher: opts.Cipher, key: smimeRandom(smimeContentKeyLen)}
	var algID []byte
	switch opts.Cipher {
	case SMIMEAES256CBC:
		env.iv = smimeRandom(aes.BlockSize)
		env.ctLen = (entityLen/aes.BlockSize + 1) * aes.BlockSize // PKCS #7 padding: always 1–16 bytes
		algID = smimeAlgorithmID(oidAES256CBC, func(b *cryptobyte.Builder) {
			b.AddASN1OctetString(env.iv)
		})
	case SMIMEAES256GCM:
		env.iv = smimeRandom(smimeGCMNonceLen)
		env.ctLen = entityLen
		env.suffixLen = 2 + smimeGCMTagLen
		algID = smimeAlgorithmID(oidAES256GCM, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // GCMParameters, RFC 5084 §3.2
				b.AddASN1OctetString(env.iv)
				b.AddASN1Int64(smimeGCMTagLen)
			})
		})
	default:
		return nil, fmt.Errorf("smime: unknown content cipher %v", opts.Cipher)
	}
	infos := make([][]byte, 0, len(recipients))
	allV0 := true
	for i, cert := range recipients {
		ri, version, err := smimeRecipientInfo(cert, env.key, opts.RSATransport)
		if err != nil {
			return nil, fmt.Errorf("recipient %d (%s): %w", i+1, smimeCertName(cert), err)
		}
		allV0 = allV0 && version == 0
		infos = append(infos, ri)
	}
	slices.SortFunc(infos, bytes.Compare) // DER orders a SET OF by encoding

	// RFC 5652 §6.1: version 0 when every RecipientInfo is version 0,
	// else 2 (key agreement infos are version 3). RFC 5083 §2.1: always 0.
	version := int64(0)
	if !allV0 && opts.Cipher == SMIMEAES256CBC {
		version = 2
	}
	var head cryptobyte.Builder
	head.AddASN1Int64(version)
	head.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
		for _, ri := range infos {
			b.AddBytes(ri)
		}
	})
	headBytes, err := head.Bytes()
	if err != nil {
		return nil, err
	}
	var eciHead cryptobyte.Builder
	eciHead.AddASN1ObjectIdentifier(oidCMSData)
	eciHead.AddBytes(algID)
	eciHeadBytes, err := eciHead.Bytes()
	if err != nil {
		return nil, err
	}

	// Inside out: [0] IMPLICIT OCTET STRING ciphertext, EncryptedContentInfo,
	// (Auth)EnvelopedData, [0] EXPLICIT, ContentInfo.
	p := &smimePrefix{tail: env.ctLen}
	p.wrap(0x80, nil)
	p.wrap(0x30, eciHeadBytes)
	contentType := oidCMSEnvelopedData
	if opts.Cipher == SMIMEAES256GCM {
		p.tail += env.suffixLen // mac MessageAuthenticationCode follows the content info
		contentType = oidCMSAuthEnvelopedData
	}
	p.wrap(0x30, headBytes)
	p.wrap(0xa0, nil)
	oid, err := asn1.Marshal(contentType)
	if err != nil {
		return nil, err
	}
	p.wrap(0x30, oid)
	env.prefix = p.bytes
	return env, nil
}

// size is the length of the whole DER encoding.
func (env *smimeEnvelope) size() int64 {
	return int64(len(env.prefix)) + env.ctLen + env.suffixLen
}

// write encrypts the entity, given as consecutive pieces, into w.
func (env *smimeEnvelope) write(w io.Writer, entity [][]byte) error {
	var n int64
	for _, piece := range entity {
		n += int64(len(piece))
	}
	block, err := aes.NewCipher(env.key)
	if err != nil {
		return err
	}
	if _, err := w.Write(env.prefix); err != nil {
		return err
	}
	switch env.cipher {
	case SMIMEAES256CBC:
		if want := (n/aes.BlockSize + 1) * aes.BlockSize; want != env.ctLen {
			return fmt.Errorf("smime: entity is %d bytes, envelope made for %d", n, env.ctLen)
		}
		return smimeWriteCBC(w, cipher.NewCBCEncrypter(block, env.iv), entity)
	case SMIMEAES256GCM:
		if n != env.ctLen {
			return fmt.Errorf("smime: entity is %d bytes, envelope made for %d", n, env.ctLen)
		}
		gcm, err := cipher.NewGCMWithNonceSize(block, smimeGCMNonceLen)
		if err != nil {
			return err
		}
		// crypto/cipher has no streaming GCM: one contiguous buffer,
		// sealed in place, is the single copy of the entity this costs.
		buf := make([]byte, 0, n+smimeGCMTagLen)
		for _, piece := range entity {
			buf = append(buf, piece...)
		}
		sealed := gcm.Seal(buf[:0], env.iv, buf, nil)
		ct, tag := sealed[:n], sealed[n:]
		if _, err := w.Write(ct); err != nil {
			return err
		}
		_, err = w.Write(append([]byte{0x04, smimeGCMTagLen}, tag...))
		return err
	}
	return fmt.Errorf("smime: unknown content cipher %v", env.cipher)
}

// smimeWriteCBC encrypts the pieces with PKCS #7 padding (RFC 5652 §6.3)
// through a fixed buffer.
func smimeWriteCBC(w io.Writer, mode cipher.BlockMode, entity [][]byte) error {
	buf := make([]byte, 0, smimeChunk)
	for _, piece := range entity {
		for len(piece) > 0 {
			n := copy(buf[len(buf):cap(buf)], piece)
			buf, piece = buf[:len(buf)+n], piece[n:]
			if len(buf) == cap(buf) {
				mode.CryptBlocks(buf, buf)
				if _, err := w.Write(buf); err != nil {
					return err
				}
				buf = buf[:0]
			}
		}
	}
	pad := aes.BlockSize - len(buf)%aes.BlockSize
	for range pad {
		buf = append(buf, byte(pad))
	}
	mode.CryptBlocks(buf, buf)
	_, err := w.Write(buf)
	return err
}

// smimePrefix builds the DER prefix of nested structures from the inside
// out, with tail bytes (ciphertext, suffix) that follow it but are not
// held.
type smimePrefix struct {
	bytes []byte
	tail  int64
}

// wrap puts a header for tag around before‖prefix‖tail.
func (p *smimePrefix) wrap(tag byte, before []byte) {
	n := int64(len(before)+len(p.bytes)) + p.tail
	out := smimeDERHeader(tag, n)
	out = append(out, before...)
	p.bytes = append(out, p.bytes...)
}

// smimeDERHeader is a DER identifier and definite length (X.690 §8.1.3).
func smimeDERHeader(tag byte, n int64) []byte {
	if n < 0x80 {
		return []byte{tag, byte(n)}
	}
	var lenBytes []byte
	for v := n; v > 0; v >>= 8 {
		lenBytes = append([]byte{byte(v)}, lenBytes...)
	}
	return append([]byte{tag, 0x80 | byte(len(lenBytes))}, lenBytes...)
}

// smimeAlgorithmID is an AlgorithmIdentifier; params nil means absent.
func smimeAlgorithmID(oid asn1.ObjectIdentifier, params func(*cryptobyte.Builder)) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		if params != nil {
			params(b)
		}
	})
	return b.BytesOrPanic() // only fixed, valid values reach here
}

// smimeRandom returns n random bytes. crypto/rand.Read never fails (it
// crashes the program first, Go 1.24 and later).
func smimeRandom(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// smimeCertName names a certificate in errors: its first address, else
// its subject.
func smimeCertName(cert *x509.Certificate) string {
	if len(cert.EmailAddresses) > 0 {
		return cert.EmailAddresses[0]
	}
	return cert.Subject.String()
}
