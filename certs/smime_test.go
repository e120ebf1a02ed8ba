package certs

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// RFC 3394 §4.6: 256 bits of key data wrapped with a 256-bit KEK.
func TestSMIMEAESKeyWrapRFC3394(t *testing.T) {
	kek, _ := hex.DecodeString("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F")
	key, _ := hex.DecodeString("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F")
	want := "28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21"
	got, err := smimeAESKeyWrap(kek, key)
	if err != nil {
		t.Fatal(err)
	}
	if g := strings.ToUpper(hex.EncodeToString(got)); g != want {
		t.Fatalf("wrap = %s, want %s", g, want)
	}
}

func TestSMIMEDERLength(t *testing.T) {
	for n, want := range map[int64]string{0: "3000", 127: "307f", 128: "308180", 256: "30820100", 1 << 24: "308401000000"} {
		if got := hex.EncodeToString(smimeDERHeader(0x30, n)); got != want {
			t.Errorf("header(%d) = %s, want %s", n, got, want)
		}
	}
}

// TestEncryptSMIMEOpenSSL encrypts raw entities (DER, no MIME wrapper) and
// has openssl decrypt them with each recipient's key, for each content
// cipher and RSA key transport.
func TestEncryptSMIMEOpenSSL(t *testing.T) {
	dir := t.TempDir()
	_, peers := smimeTestCA(t, dir, map[string]string{
		"rsa@partner.example":  "rsa:2048",
		"p256@partner.example": "ec:P-256",
		"p384@partner.example": "ec:P-384",
		"p521@partner.example": "ec:P-521",
	})
	var all []*x509.Certificate
	for _, p := range peers {
		all = append(all, p.cert)
	}
	entity := []byte("Content-Type: text/plain; charset=utf-8\r\n\r\nThe quarterly figures, for your eyes only.\r\n")
	for _, opts := range []SMIMEOptions{
		{},
		{RSATransport: SMIMERSAOAEP},
		{Cipher: SMIMEAES256GCM},
		{Cipher: SMIMEAES256GCM, RSATransport: SMIMERSAOAEP},
	} {
		t.Run(opts.Cipher.String()+"/"+opts.RSATransport.String(), func(t *testing.T) {
			der, err := EncryptSMIME(all, entity, opts)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(der, []byte("eyes only")) {
				t.Fatal("plaintext visible in the envelope")
			}
			in := filepath.Join(dir, strings.NewReplacer("/", "_", "-", "_").Replace(t.Name())+".der")
			if err := os.WriteFile(in, der, 0o600); err != nil {
				t.Fatal(err)
			}
			for addr, peer := range peers {
				if got := smimeDecrypt(t, dir, peer, in, "-inform", "DER", "-binary"); !bytes.Equal(got, entity) {
					t.Errorf("%s decrypted %q, want %q", addr, got, entity)
				}
			}
		})
	}
}

func TestEncryptSMIMERefuses(t *testing.T) {
	if _, err := EncryptSMIME(nil, []byte("x"), SMIMEOptions{}); !errors.Is(err, ErrSMIMENoRecipients) {
		t.Errorf("no recipients: %v", err)
	}
	ed := smimeTestCert(t, smimeCertSpec{key: "ed25519"})
	if _, err := EncryptSMIME([]*x509.Certificate{ed}, []byte("x"), SMIMEOptions{}); !errors.Is(err, ErrSMIMEUnsupportedKey) {
		t.Errorf("ed25519: %v", err)
	}
	small := smimeTestCert(t, smimeCertSpec{key: "rsa1024"})
	if _, err := EncryptSMIME([]*x509.Certificate{small}, []byte("x"), SMIMEOptions{}); !errors.Is(err, ErrSMIMEUnsupportedKey) {
		t.Errorf("rsa-1024: %v", err)
	}
}
