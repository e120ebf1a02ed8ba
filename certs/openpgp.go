package certs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strconv"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// minRSABits is the smallest RSA key sealgate encrypts to (NIST SP
// 800-131A: 2048 bits through 2030).
const minRSABits = 2048

// maxKeyFile bounds what one import reads: a key block with many
// third-party signatures is large, but not this large.
const maxKeyFile = 8 << 20

// ParseOpenPGP reads armored or binary OpenPGP public keys and returns
// one Key per (email user ID, key), each with the public key alone in
// Data. It refuses the whole input, storing nothing, when any key in it
// is unusable: garbage, a private key (we never hold recipients'
// secrets), an expired or revoked key, one without a valid
// encryption-capable subkey, an RSA key under 2048 bits, or one without
// an email address in a valid user ID. Errors wrap ErrBadKey.
func ParseOpenPGP(data []byte, now time.Time) ([]Key, error) {
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("%w: larger than %d MiB", ErrBadKey, maxKeyFile>>20)
	}
	entities, err := readEntities(data)
	if err != nil {
		return nil, err
	}
	var keys []Key
	for _, e := range entities {
		ks, err := openPGPEntries(e, now)
		if err != nil {
			return nil, fmt.Errorf("%w: key %s: %v", ErrBadKey, fingerprint(e.PrimaryKey), err)
		}
		keys = append(keys, ks...)
	}
	return keys, nil
}

// readEntities parses an armored or binary key block. A private key
// anywhere in it refuses the whole block.
func readEntities(data []byte) (openpgp.EntityList, error) {
	var r io.Reader = bytes.NewReader(data)
	if trimmed := bytes.TrimSpace(data); bytes.HasPrefix(trimmed, []byte("-----BEGIN ")) {
		block, err := armor.Decode(bytes.NewReader(trimmed))
		if err != nil {
			return nil, fmt.Errorf("%w: not an OpenPGP armored block: %v", ErrBadKey, err)
		}
		switch block.Type {
		case openpgp.PublicKeyType:
		case openpgp.PrivateKeyType:
			return nil, fmt.Errorf("%w: this is a private key; sealgate only takes recipients' public keys and never holds their secrets (export with gpg --export, not --export-secret-keys)", ErrBadKey)
		default:
			return nil, fmt.Errorf("%w: armored %q, want %q", ErrBadKey, block.Type, openpgp.PublicKeyType)
		}
		r = block.Body
	}
	entities, err := openpgp.ReadKeyRing(r)
	if err != nil {
		return nil, fmt.Errorf("%w: not an OpenPGP public key: %v", ErrBadKey, err)
	}
	if len(entities) == 0 {
		return nil, fmt.Errorf("%w: no OpenPGP key found", ErrBadKey)
	}
	for _, e := range entities {
		if e.PrivateKey != nil || hasPrivateSubkey(e) {
			return nil, fmt.Errorf("%w: key %s is a private key; sealgate only takes recipients' public keys and never holds their secrets (export with gpg --export, not --export-secret-keys)", ErrBadKey, fingerprint(e.PrimaryKey))
		}
	}
	return entities, nil
}

func hasPrivateSubkey(e *openpgp.Entity) bool {
	for _, sk := range e.Subkeys {
		if sk.PrivateKey != nil {
			return true
		}
	}
	return false
}

// usableEntity checks that e can be encrypted to now — a valid
// self-signature, not revoked or expired, strong enough, with a valid
// encryption-capable key — and returns that key and when e expires
// (zero for never).
func usableEntity(e *openpgp.Entity, now time.Time) (openpgp.Key, time.Time, error) {
	sig, _ := e.PrimarySelfSignature()
	if sig == nil {
		return openpgp.Key{}, time.Time{}, errors.New("no valid self-signature")
	}
	if e.Revoked(now) {
		return openpgp.Key{}, time.Time{}, errors.New("revoked")
	}
	if e.PrimaryKey.KeyExpired(sig, now) {
		return openpgp.Key{}, time.Time{}, fmt.Errorf("expired on %s", keyExpiry(e.PrimaryKey, sig).Format(time.DateOnly))
	}
	if err := strongEnough(e.PrimaryKey); err != nil {
		return openpgp.Key{}, time.Time{}, err
	}
	enc, ok := e.EncryptionKey(now)
	if !ok {
		return openpgp.Key{}, time.Time{}, errors.New("no valid (unexpired, unrevoked) encryption-capable key or subkey")
	}
	if err := strongEnough(enc.PublicKey); err != nil {
		return openpgp.Key{}, time.Time{}, err
	}
	expires := keyExpiry(e.PrimaryKey, sig)
	if sub := keyExpiry(enc.PublicKey, enc.SelfSignature); !sub.IsZero() && (expires.IsZero() || sub.Before(expires)) {
		expires = sub
	}
	return enc, expires, nil
}

// openPGPEntries checks one entity and makes its store entries.
func openPGPEntries(e *openpgp.Entity, now time.Time) ([]Key, error) {
	enc, expires, err := usableEntity(e, now)
	if err != nil {
		return nil, err
	}
	var public bytes.Buffer
	if err := e.Serialize(&public); err != nil {
		return nil, fmt.Errorf("cannot serialise the public key: %v", err)
	}
	var keys []Key
	seen := map[string]bool{}
	for _, id := range e.Identities {
		if id.SelfSignature == nil || id.Revoked(now) || id.SelfSignature.SigExpired(now) {
			continue
		}
		addr, ok := userIDAddress(id)
		if !ok || seen[addr] {
			continue
		}
		seen[addr] = true
		keys = append(keys, Key{
			Address: addr, Kind: KindOpenPGP, Fingerprint: fingerprint(e.PrimaryKey),
			Algorithm: algorithmName(enc.PublicKey), Created: e.PrimaryKey.CreationTime.UTC(),
			Expires: expires, Source: SourceImport, UserID: id.Name, Data: public.Bytes(),
		})
	}
	if len(keys) == 0 {
		return nil, errors.New("no valid user ID with an email address")
	}
	return keys, nil
}

// userIDAddress takes the email address out of a user ID ("Bob
// <bob@example.org>", or a bare address).
func userIDAddress(id *openpgp.Identity) (string, bool) {
	email := ""
	if id.UserId != nil {
		email = id.UserId.Email
	}
	if email == "" {
		if a, err := mail.ParseAddress(id.Name); err == nil {
			email = a.Address
		}
	}
	if email == "" {
		return "", false
	}
	addr, err := KeyAddress(email)
	return addr, err == nil
}

// keyExpiry is when pk expires according to sig, zero for never.
func keyExpiry(pk *packet.PublicKey, sig *packet.Signature) time.Time {
	if sig == nil || sig.KeyLifetimeSecs == nil || *sig.KeyLifetimeSecs == 0 {
		return time.Time{}
	}
	return pk.CreationTime.Add(time.Duration(*sig.KeyLifetimeSecs) * time.Second).UTC()
}

// strongEnough refuses RSA keys under minRSABits and the algorithms
// sealgate does not encrypt to.
func strongEnough(pk *packet.PublicKey) error {
	switch pk.PubKeyAlgo {
	case packet.PubKeyAlgoRSA, packet.PubKeyAlgoRSAEncryptOnly, packet.PubKeyAlgoRSASignOnly:
		bits, err := pk.BitLength()
		if err != nil {
			return err
		}
		if int(bits) < minRSABits {
			return fmt.Errorf("RSA key of %d bits; at least %d are required", bits, minRSABits)
		}
	case packet.PubKeyAlgoElGamal, packet.PubKeyAlgoDSA:
		return fmt.Errorf("%s keys are not accepted; ask for an RSA (≥ %d bits) or Curve25519 key", algorithmName(pk), minRSABits)
	}
	return nil
}

// algorithmName names a public key's algorithm for listings.
func algorithmName(pk *packet.PublicKey) string {
	switch pk.PubKeyAlgo {
	case packet.PubKeyAlgoRSA, packet.PubKeyAlgoRSAEncryptOnly, packet.PubKeyAlgoRSASignOnly:
		bits, _ := pk.BitLength()
		return "RSA-" + strconv.Itoa(int(bits))
	case packet.PubKeyAlgoECDH:
		if c, err := pk.Curve(); err == nil {
			return "ECDH-" + string(c)
		}
		return "ECDH"
	case packet.PubKeyAlgoEdDSA:
		return "EdDSA"
	case packet.PubKeyAlgoEd25519:
		return "Ed25519"
	case packet.PubKeyAlgoX25519:
		return "X25519"
	case packet.PubKeyAlgoX448:
		return "X448"
	case packet.PubKeyAlgoElGamal:
		return "ElGamal"
	case packet.PubKeyAlgoDSA:
		return "DSA"
	case packet.PubKeyAlgoECDSA:
		return "ECDSA"
	}
	return "algorithm-" + strconv.Itoa(int(pk.PubKeyAlgo))
}

func fingerprint(pk *packet.PublicKey) string {
	return strings.ToUpper(fmt.Sprintf("%x", pk.Fingerprint))
}
