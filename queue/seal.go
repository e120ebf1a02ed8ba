package queue

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
)

// sealer encrypts spool records with AES-256-GCM. Each record gets a fresh
// random nonce; the additional data binds the ciphertext to its bucket and
// key, so a record copied under another ID or into another bucket fails
// to open instead of being taken for something it is not.
type sealer struct {
	aead        cipher.AEAD
	indexSecret []byte // HMAC key of index.go, derived from the spool key
}

func newSealer(key []byte) (*sealer, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	idx, err := deriveIndexKey(key)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead, indexSecret: idx}, nil
}

func (s *sealer) seal(kind, id string, plain []byte) []byte {
	out := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		panic("crypto/rand failed: " + err.Error()) // cannot happen on supported platforms
	}
	return s.aead.Seal(out, out, plain, additionalData(kind, id))
}

func (s *sealer) open(kind, id string, sealed []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n+s.aead.Overhead() {
		return nil, errors.New("record too short")
	}
	return s.aead.Open(nil, sealed[:n], sealed[n:], additionalData(kind, id))
}

func additionalData(kind, id string) []byte {
	return []byte(kind + "\x00" + id)
}
