package config

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// MinDKIMRSABits is the smallest RSA key accepted for DKIM: RFC 8301
// requires verifiers to reject keys under 1024 bits and recommends 2048
// for signers; 1024-bit keys are factorable by well-funded attackers.
const MinDKIMRSABits = 2048

// LoadDKIMKey reads a PEM private key for DKIM signing: RSA (PKCS #1 or
// PKCS #8) of at least MinDKIMRSABits, or Ed25519 (PKCS #8). Errors name
// the file and never include key material.
func LoadDKIMKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %v", path, unwrapPathError(err))
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	var key any
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("%s: PEM block %q is not a private key", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: bad private key: %v", path, err)
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if bits := k.N.BitLen(); bits < MinDKIMRSABits {
			return nil, fmt.Errorf("%s: RSA key of %d bits refused: DKIM keys need at least %d", path, bits, MinDKIMRSABits)
		}
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, errors.New(path + ": DKIM keys must be RSA or Ed25519")
}

// DKIMAlgorithm names the signing algorithm of a key: "rsa" or "ed25519".
func DKIMAlgorithm(k crypto.Signer) string {
	if _, ok := k.Public().(ed25519.PublicKey); ok {
		return "ed25519"
	}
	return "rsa"
}

func (v *validator) validateDKIM(d *DKIM) {
	seen := map[string]bool{}
	for i, k := range d.Keys {
		p := fmt.Sprintf("dkim.keys[%d]", i)
		if !validHostname(k.Domain) {
			v.fail(p+".domain", "%q is not a valid domain", k.Domain)
		}
		if !validHostname(k.Selector) {
			v.fail(p+".selector", "%q is not a valid selector (letters, digits, hyphens, dots)", k.Selector)
		}
		key, err := LoadDKIMKey(k.KeyFile)
		if err != nil {
			v.fail(p+".key_file", "%v", err)
			continue
		}
		id := k.Domain + "/" + DKIMAlgorithm(key)
		if seen[id] {
			v.fail(p+".key_file", "a second %s key for %s: give at most one RSA and one Ed25519 key per domain", DKIMAlgorithm(key), k.Domain)
		}
		seen[id] = true
	}
}
