package certs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// ErrNoUsableKey: no key in the store can encrypt to the address now;
// the wrapped message says why (none stored, expired, revoked since
// import).
var ErrNoUsableKey = errors.New("certs: no usable key")

// Keyring is what the node and the admin work with: imports checked
// before they are stored, listings without the key material, and the
// key to encrypt to an address, checked again at the moment of use (a
// key may have expired since its import).
type Keyring struct {
	store KeyStore
	now   func() time.Time
	disc  *discovery // nil: the store alone (discover.go)
}

// NewKeyring returns a keyring over store; now nil means time.Now.
func NewKeyring(store KeyStore, now func() time.Time) *Keyring {
	if now == nil {
		now = time.Now
	}
	return &Keyring{store: store, now: now}
}

// ImportKeys checks and stores the public keys in data — armored or
// binary OpenPGP (ParseOpenPGP), or S/MIME certificates in PEM, DER or
// a PKCS #7 bundle (ParseSMIME) — and returns the entries it stored.
// Nothing is stored when any key in data is refused (ErrBadKey).
func (r *Keyring) ImportKeys(data []byte) ([]Key, error) {
	parse := ParseOpenPGP
	if looksLikeSMIME(data) {
		parse = ParseSMIME
	}
	keys, err := parse(data, r.now())
	if err != nil {
		return nil, err
	}
	added := r.now().UTC()
	for i := range keys {
		keys[i].Added = added
		if err := r.store.Put(keys[i]); err != nil {
			return nil, err
		}
		keys[i].Data = nil
	}
	return keys, nil
}

// Keys returns every entry, without key material.
func (r *Keyring) Keys() ([]Key, error) {
	keys, err := r.store.List()
	return stripData(keys), err
}

// KeysFor returns the entries of address, newest first, without key
// material.
func (r *Keyring) KeysFor(address string) ([]Key, error) {
	keys, err := r.store.Lookup(address)
	return stripData(keys), err
}

// RemoveKey deletes every entry of a fingerprint (ErrNoKey if none).
func (r *Keyring) RemoveKey(fingerprint string) (int, error) { return r.store.Remove(fingerprint) }

func stripData(keys []Key) []Key {
	for i := range keys {
		keys[i].Data = nil
	}
	return keys
}

// OpenPGPRecipient is a stored key, checked and ready to encrypt to.
type OpenPGPRecipient struct {
	Key    Key // the store entry, without Data
	entity *openpgp.Entity
}

// OpenPGPRecipient returns the newest key of address that can encrypt
// now, from the store alone: imported keys if there are any, else
// discovered ones until they are due for a new lookup. The error wraps
// ErrNoUsableKey and says why none can: none stored, or each expired,
// revoked or unreadable.
func (r *Keyring) OpenPGPRecipient(address string) (*OpenPGPRecipient, error) {
	keys, err := r.store.Lookup(address)
	if err != nil {
		return nil, err
	}
	now := r.now()
	keys, _ = r.candidates(keys, KindOpenPGP, now)
	return pickOpenPGP(keys, address, now)
}

// pickOpenPGP returns the first of keys that can encrypt now.
func pickOpenPGP(keys []Key, address string, now time.Time) (*OpenPGPRecipient, error) {
	var why []string
	for _, k := range keys {
		if k.Kind != KindOpenPGP {
			continue
		}
		entities, err := openpgp.ReadKeyRing(bytes.NewReader(k.Data))
		if err != nil || len(entities) != 1 {
			why = append(why, k.Fingerprint+" unreadable")
			continue
		}
		e := entities[0]
		if _, err := openPGPEntries(e, now); err != nil {
			why = append(why, k.Fingerprint+" "+err.Error())
			continue
		}
		k.Data = nil
		return &OpenPGPRecipient{Key: k, entity: e}, nil
	}
	if len(why) == 0 {
		return nil, fmt.Errorf("%w: no OpenPGP key for %s", ErrNoUsableKey, address)
	}
	return nil, fmt.Errorf("%w: no usable OpenPGP key for %s (%s)", ErrNoUsableKey, address, joinReasons(why))
}

func joinReasons(why []string) string {
	out := ""
	for i, w := range why {
		if i > 0 {
			out += "; "
		}
		out += w
	}
	return out
}

// pgpConfig is how sealgate encrypts: AES-256 (AES-128 only for a key
// that does not accept AES-256; the library never picks anything older),
// SEIPD v2 with AEAD only when every recipient key advertises it, else
// SEIPD v1 with its modification detection code; no compression (no
// length oracle, and mail is mostly compressed already).
func pgpConfig(now time.Time) *packet.Config {
	return &packet.Config{
		DefaultCipher:          packet.CipherAES256,
		DefaultCompressionAlgo: packet.CompressionNone,
		AEADConfig:             &packet.AEADConfig{DefaultMode: packet.AEADModeGCM},
		Time:                   func() time.Time { return now },
	}
}

// EncryptOpenPGP returns a writer that encrypts what is written to it
// for every recipient and writes the ASCII-armored message to w; Close
// finishes the message (and the armor). It streams: nothing is held
// but the cipher state and one piece of at most 32 KiB per layer,
// however large the Writes.
func EncryptOpenPGP(w io.Writer, to []*OpenPGPRecipient, now time.Time) (io.WriteCloser, error) {
	if len(to) == 0 {
		return nil, errors.New("certs: encrypt to nobody")
	}
	entities := make([]*openpgp.Entity, len(to))
	for i, r := range to {
		entities[i] = r.entity
	}
	armored, err := newArmorWriter(w)
	if err != nil {
		return nil, err
	}
	plain, err := openpgp.Encrypt(armored, entities, nil, &openpgp.FileHints{IsBinary: true}, pgpConfig(now))
	if err != nil {
		return nil, err
	}
	return &closeBoth{WriteCloser: plain, outer: armored}, nil
}

// closeBoth closes the encryption layer, then the armor around it.
type closeBoth struct {
	io.WriteCloser
	outer io.WriteCloser
}

// encryptChunk bounds what one Write hands to the OpenPGP layers.
// go-crypto's partial-length packet writer keeps each Write whole in a
// buffer and its CFB stream writer allocates a ciphertext copy of it, so
// a 25 MB message written at once was held three more times; in 32 KiB
// pieces each layer holds one piece.
const encryptChunk = 32 << 10

func (c *closeBoth) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), encryptChunk)
		m, err := c.WriteCloser.Write(p[:k])
		n += m
		if err != nil {
			return n, err
		}
		p = p[k:]
	}
	return n, nil
}

func (c *closeBoth) Close() error {
	if err := c.WriteCloser.Close(); err != nil {
		return err
	}
	return c.outer.Close()
}
