package certs

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sealgate/sealgate/internal/mailtext"
)

// Errors callers branch on.
var (
	// ErrNoKey: the key store holds no key with that fingerprint.
	ErrNoKey = errors.New("certs: no such key")
	// ErrBadKey: the material offered for import is not a usable
	// public key; the wrapped message says why. Nothing was stored.
	ErrBadKey = errors.New("certs: key refused")
)

// Key kinds.
const (
	KindOpenPGP = "openpgp"
	KindSMIME   = "smime"
)

// Key sources: where a stored key came from.
const (
	SourceImport = "import" // an admin imported it
	// Found by discovery (discover.go): kept until Key.Until, never
	// preferred over an imported key.
	SourceWKD        = "wkd"        // OpenPGP Web Key Directory
	SourceOPENPGPKEY = "openpgpkey" // DNSSEC-authenticated OPENPGPKEY record (RFC 7929)
	SourceSMIMEA     = "smimea"     // DNSSEC-authenticated SMIMEA record (RFC 8162)
)

// Key is one entry of the key store: one correspondent address and one
// public key that may be used to encrypt to it. A key with two email
// user IDs (a certificate with two rfc822Names) is two entries with the
// same fingerprint.
//
// For an OpenPGP key the fingerprint is the primary key's; for an
// S/MIME certificate it is the SHA-256 of the certificate's DER, as
// `openssl x509 -noout -fingerprint -sha256` prints it (without the
// colons). A serial number alone does not name a certificate — it is
// unique only per issuer — so the fingerprint is what removes one.
type Key struct {
	Address     string    `json:"address"` // KeyAddress form
	Kind        string    `json:"kind"`    // KindOpenPGP or KindSMIME
	Fingerprint string    `json:"fingerprint"`
	Algorithm   string    `json:"algorithm"`        // of the encryption (sub)key, e.g. "RSA-3072", "X25519", "EC-P256"
	Created     time.Time `json:"created"`          // a certificate's notBefore
	Expires     time.Time `json:"expires,omitzero"` // zero: never
	Source      string    `json:"source"`           // SourceImport, SourceWKD, …
	Added       time.Time `json:"added"`
	UserID      string    `json:"user_id,omitempty"` // the user ID the address was taken from
	// Serial (hex), Subject and Issuer identify an S/MIME certificate
	// as mail clients and CMS do (issuer and serial number).
	Serial  string `json:"serial,omitempty"`
	Subject string `json:"subject,omitempty"`
	Issuer  string `json:"issuer,omitempty"`
	// Data is the public key (binary OpenPGP transferable public key, or
	// the certificate's DER). It is public, but bulky: listings leave it
	// out.
	Data []byte `json:"data,omitempty"`
	// Until is when a discovered entry must be looked up again; until
	// then it is used as it is. Zero for imported keys.
	Until time.Time `json:"until,omitzero"`
	// Trust is what a discovered S/MIME certificate is trusted on:
	// TrustDANEEE or TrustPKIXEE. Empty for everything else.
	Trust string `json:"trust,omitempty"`
}

// Trust of a certificate found in an SMIMEA record (RFC 8162 §2.1, the
// certificate usages of RFC 6698 §2.1.1).
const (
	// TrustDANEEE: usage DANE-EE(3), the DNSSEC-signed record is the
	// trust anchor; used as an imported certificate is.
	TrustDANEEE = "dane-ee"
	// TrustPKIXEE: usage PKIX-EE(1), the certificate must also chain to
	// the S/MIME trust store (keys.smime_roots), at discovery and at
	// every use.
	TrustPKIXEE = "pkix-ee"
)

// KeyStore keeps correspondents' public keys. Put replaces the entry of
// the same address and fingerprint; Lookup returns the entries of one
// address (in KeyAddress form, or any spelling KeyAddress accepts),
// newest key first, and none (no error) when there is none; List returns
// every entry by address; Remove deletes every entry of a fingerprint
// and returns how many went, ErrNoKey when none did. Implementations are
// safe for concurrent use. SpoolKeyStore is the embedded one; a shared
// store can take its place.
type KeyStore interface {
	Put(k Key) error
	Lookup(address string) ([]Key, error)
	List() ([]Key, error)
	Remove(fingerprint string) (int, error)
}

// RecordStore is what SpoolKeyStore needs from the spool: a sealed
// key/value bucket. queue.Store implements it. ForEachKeyRecord calls
// fn for each record whose ID starts with prefix, in ID order; an error
// from fn stops the walk and is returned.
type RecordStore interface {
	PutKeyRecord(id string, data []byte) error
	DeleteKeyRecords(ids []string) error
	ForEachKeyRecord(prefix string, fn func(id string, data []byte) error) error
}

// SpoolKeyStore is the KeyStore kept in the spool's database, sealed
// under the spool key like every other record.
type SpoolKeyStore struct {
	records RecordStore
}

// NewSpoolKeyStore returns the key store kept in records.
func NewSpoolKeyStore(records RecordStore) *SpoolKeyStore {
	return &SpoolKeyStore{records: records}
}

// recordID orders records by address, so that Lookup is a prefix walk.
func recordID(address, fingerprint string) string {
	return address + "\x00" + fingerprint
}

// Put stores k.
func (s *SpoolKeyStore) Put(k Key) error {
	addr, err := KeyAddress(k.Address)
	if err != nil {
		return err
	}
	k.Address, k.Fingerprint = addr, NormalizeFingerprint(k.Fingerprint)
	data, err := json.Marshal(k)
	if err != nil {
		return err
	}
	return s.records.PutKeyRecord(recordID(k.Address, k.Fingerprint), data)
}

// Lookup returns the keys of address, newest first.
func (s *SpoolKeyStore) Lookup(address string) ([]Key, error) {
	addr, err := KeyAddress(address)
	if err != nil {
		return nil, err
	}
	keys, err := s.walk(addr + "\x00")
	slices.SortStableFunc(keys, func(a, b Key) int { return b.Created.Compare(a.Created) })
	return keys, err
}

// List returns every entry, by address.
func (s *SpoolKeyStore) List() ([]Key, error) { return s.walk("") }

// Remove deletes every entry of fingerprint.
func (s *SpoolKeyStore) Remove(fingerprint string) (int, error) {
	fp := NormalizeFingerprint(fingerprint)
	var ids []string
	err := s.records.ForEachKeyRecord("", func(id string, _ []byte) error {
		if _, f, ok := strings.Cut(id, "\x00"); ok && f == fp {
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if len(ids) == 0 {
		return 0, fmt.Errorf("%w: %s", ErrNoKey, fp)
	}
	return len(ids), s.records.DeleteKeyRecords(ids)
}

func (s *SpoolKeyStore) walk(prefix string) ([]Key, error) {
	var keys []Key
	err := s.records.ForEachKeyRecord(prefix, func(id string, data []byte) error {
		var k Key
		if err := json.Unmarshal(data, &k); err != nil {
			return fmt.Errorf("key record %q: %w", id, err)
		}
		keys = append(keys, k)
		return nil
	})
	return keys, err
}

// KeyAddress is the form an address takes in the key store: the
// canonical address (mailtext.CanonicalAddress) with its local part
// folded to lower case. Local parts are case-sensitive in principle, but
// no key directory treats them so (WKD hashes the lower-cased local
// part), and a key imported for Bob@ must serve bob@.
func KeyAddress(s string) (string, error) {
	addr, domain, err := mailtext.CanonicalAddress(strings.TrimSpace(s))
	if err != nil {
		return "", fmt.Errorf("address %q: %w", s, err)
	}
	if domain == "" {
		return "", fmt.Errorf("address %q has no domain", s)
	}
	return strings.ToLower(addr[:len(addr)-len(domain)]) + domain, nil
}

// NormalizeFingerprint writes a fingerprint as the key store keeps it:
// upper-case hex without spaces or colons.
func NormalizeFingerprint(fp string) string {
	return strings.ToUpper(strings.NewReplacer(" ", "", ":", "", "0x", "", "0X", "").Replace(strings.TrimSpace(fp)))
}
