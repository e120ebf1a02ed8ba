package certs

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"os"
	"strings"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/internal/safeio"
)

// dkimHeaders are the header fields we sign (RFC 6376 §5.4.1). Fields
// listed twice are oversigned: the second instance signs their absence, so
// nobody can add a second From, Reply-To, Subject, Date, To, Cc,
// Message-ID or Content-Type after signing without breaking the
// signature (RFC 6376 §8.15). A field listed once that the message lacks
// is protected too: adding it later breaks the signature.
var dkimHeaders = []string{
	"From", "From", "Reply-To", "Reply-To", "Subject", "Subject", "Date", "Date",
	"To", "To", "Cc", "Cc", "Message-ID", "Message-ID", "In-Reply-To", "References",
	"MIME-Version", "Content-Type", "Content-Type", "Content-Transfer-Encoding",
	"List-Unsubscribe", "List-Unsubscribe-Post",
}

// GenerateDKIMKey makes a signing key: algo "rsa" (bits ≥ 2048) or
// "ed25519". It returns the key and its PKCS #8 PEM encoding.
func GenerateDKIMKey(algo string, bits int) (crypto.Signer, []byte, error) {
	var key crypto.Signer
	switch algo {
	case "rsa":
		if bits < config.MinDKIMRSABits {
			return nil, nil, fmt.Errorf("RSA keys of %d bits are refused: use at least %d", bits, config.MinDKIMRSABits)
		}
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			return nil, nil, err
		}
		key = k
	case "ed25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		key = k
	default:
		return nil, nil, fmt.Errorf("unknown DKIM algorithm %q (rsa or ed25519)", algo)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// WriteDKIMKey stores a PEM key with mode 0600. It never overwrites: a
// key already published in DNS must not be lost by a mistyped command.
func WriteDKIMKey(path string, pemKey []byte) error {
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("%s already exists; remove it first or choose another file", path)
	}
	return safeio.WriteFile(path, pemKey, 0o600)
}

// DKIMRecord is the DNS TXT record that publishes key's public half
// (RFC 6376 §3.6.1; k=ed25519 from RFC 8463).
func DKIMRecord(key crypto.Signer) (string, error) {
	switch pub := key.Public().(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return "", err
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub), nil
	}
	return "", errors.New("DKIM keys must be RSA or Ed25519")
}

// SplitTXT cuts a record into the 255-byte character-strings a TXT
// record is made of (RFC 1035 §3.3.14), quoted for a zone file.
func SplitTXT(record string) string {
	var parts []string
	for len(record) > 255 {
		parts = append(parts, record[:255])
		record = record[255:]
	}
	parts = append(parts, record)
	for i, p := range parts {
		parts[i] = `"` + p + `"`
	}
	return strings.Join(parts, " ")
}

// DKIMSigner signs outgoing messages with the configured keys.
type DKIMSigner struct {
	keys map[string][]dkimKey // by lower-case domain, RSA before Ed25519
}

type dkimKey struct {
	domain, selector string
	signer           crypto.Signer
}

// NewDKIMSigner loads the keys of the dkim config section.
func NewDKIMSigner(keys []config.DKIMKey) (*DKIMSigner, error) {
	s := &DKIMSigner{keys: map[string][]dkimKey{}}
	for _, k := range keys {
		signer, err := config.LoadDKIMKey(k.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("dkim: %w", err)
		}
		d := strings.ToLower(k.Domain)
		entry := dkimKey{domain: d, selector: k.Selector, signer: signer}
		if config.DKIMAlgorithm(signer) == "rsa" {
			s.keys[d] = append([]dkimKey{entry}, s.keys[d]...)
		} else {
			s.keys[d] = append(s.keys[d], entry)
		}
	}
	return s, nil
}

// Domains lists the domains that have keys.
func (s *DKIMSigner) Domains() []string {
	var out []string
	for d := range s.keys {
		out = append(out, d)
	}
	return out
}

// Sign returns msg with a DKIM-Signature header per key of the domain of
// its From header prepended, and that domain. When the domain has no key
// (or the message has no usable From), msg comes back unchanged with
// signed false.
func (s *DKIMSigner) Sign(msg []byte) (out []byte, domain string, signed bool, err error) {
	sigs, domain, signed, err := s.SignStream(bytes.NewReader(msg))
	if !signed || err != nil {
		return msg, domain, false, err
	}
	return append(sigs, msg...), domain, true, nil
}

// maxSignedHeader bounds how much header SignStream reads looking for
// From; a message whose header runs longer goes unsigned.
const maxSignedHeader = 1 << 20

// SignStream reads a message once and returns the DKIM-Signature header
// fields (one per key of its From domain) to put in front of it, and
// that domain. It holds the header, never the body: a large message is
// signed as it streams past. signed is false (and sigs empty) when the
// domain has no key or the message has no usable From.
func (s *DKIMSigner) SignStream(r io.Reader) (sigs []byte, domain string, signed bool, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var head bytes.Buffer
	lineStart := true
	for head.Len() < maxSignedHeader {
		line, err := br.ReadSlice('\n')
		head.Write(line)
		if err == bufio.ErrBufferFull {
			lineStart = false
			continue
		}
		if err == io.EOF {
			break // a message that is all header
		}
		if err != nil {
			return nil, "", false, err
		}
		if lineStart && (string(line) == "\r\n" || string(line) == "\n") {
			break
		}
		lineStart = true
	}
	domain = fromDomain(head.Bytes())
	keys := s.keys[domain]
	if len(keys) == 0 {
		return nil, domain, false, nil
	}
	signers := make([]*dkim.Signer, 0, len(keys))
	writers := make([]io.Writer, 0, len(keys))
	defer func() {
		// A signer not closed yet (a failure half-way) is closed so its
		// goroutine ends; Close must not be called twice.
		for _, sg := range signers {
			sg.Close()
		}
	}()
	for _, k := range keys {
		signer, err := dkim.NewSigner(&dkim.SignOptions{
			Domain:                 k.domain,
			Selector:               k.selector,
			Signer:                 k.signer,
			HeaderCanonicalization: dkim.CanonicalizationRelaxed,
			BodyCanonicalization:   dkim.CanonicalizationRelaxed,
			HeaderKeys:             dkimHeaders,
		})
		if err != nil {
			return nil, domain, false, err
		}
		signers = append(signers, signer)
		writers = append(writers, signer)
	}
	w := io.MultiWriter(writers...)
	if _, err := w.Write(head.Bytes()); err != nil {
		return nil, domain, false, err
	}
	if _, err := io.Copy(w, br); err != nil {
		return nil, domain, false, err
	}
	var out bytes.Buffer
	for len(signers) > 0 {
		signer := signers[0]
		signers = signers[1:]
		if err := signer.Close(); err != nil {
			return nil, domain, false, err
		}
		out.WriteString(signer.Signature())
	}
	return out.Bytes(), domain, true, nil
}

// fromDomain is the lower-cased domain of the first address in the From
// header, "" when there is none.
func fromDomain(msg []byte) string {
	r, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		return ""
	}
	addrs, err := r.Header.AddressList("From")
	if err != nil || len(addrs) == 0 {
		return ""
	}
	at := strings.LastIndexByte(addrs[0].Address, '@')
	if at < 0 {
		return ""
	}
	return strings.ToLower(addrs[0].Address[at+1:])
}
