package queue

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Index keys.
//
// Records about destinations (TLS history, cached MTA-STS policies,
// TLSRPT aggregates) are looked up by domain name, so the name would be
// the bucket key — in clear in the file, next to a sealed value. Instead
// the key is a keyed hash of the name: HMAC-SHA256 under a key derived
// from the spool key (HKDF, RFC 5869), behind a NUL byte that no domain
// name starts with. Whoever holds the file without the spool key learns
// how many domains there are, not which. The name itself is inside the
// sealed value, so listing needs no reverse lookup.
//
// Spools written before this kept the names in clear; Open moves those
// records to their hashed keys once (migrateIndexKeys). The old bytes
// may linger in pages bbolt has freed until it reuses them.

const indexKeyInfo = "sealgate spool index key v1"

// indexPrefix starts every hashed key: a byte no domain name or day
// string starts with, which is how a clear legacy key is told apart.
const indexPrefix = 0x00

func deriveIndexKey(spoolKey []byte) ([]byte, error) {
	return hkdf.Key(sha256.New, spoolKey, nil, indexKeyInfo, 32)
}

// indexKey is the bucket key for name among the records of kind.
func (s *sealer) indexKey(kind, name string) []byte {
	mac := hmac.New(sha256.New, s.indexSecret)
	mac.Write([]byte(kind + "\x00" + name))
	return mac.Sum([]byte{indexPrefix})
}

// migrateIndexKeys moves records stored under a clear name to their
// hashed key. A legacy record that does not open stays where it is (it
// is reported as unreadable when listed).
func migrateIndexKeys(tx *bolt.Tx, sl *sealer) (int, error) {
	moved := 0
	for _, m := range []struct {
		bucket []byte
		kind   string
		legacy func(k []byte) bool
		newKey func(plain []byte) ([]byte, error)
	}{
		{bucketDomains, kindDomain, func(k []byte) bool { return k[0] != indexPrefix }, func(plain []byte) ([]byte, error) {
			var d DomainInfo
			err := json.Unmarshal(plain, &d)
			return sl.indexKey(kindDomain, d.Domain), err
		}},
		{bucketMTASTS, kindMTASTS, func(k []byte) bool { return k[0] != indexPrefix }, func(plain []byte) ([]byte, error) {
			var e MTASTSEntry
			err := json.Unmarshal(plain, &e)
			return sl.indexKey(kindMTASTS, e.Domain), err
		}},
		{bucketTLSRPT, kindTLSRPT, func(k []byte) bool {
			_, rest, _ := bytes.Cut(k, []byte("/"))
			return len(rest) == 0 || rest[0] != indexPrefix
		}, func(plain []byte) ([]byte, error) {
			var r TLSRPTRecord
			err := json.Unmarshal(plain, &r)
			return tlsrptKey(sl, r.Day, r.Domain, r.PolicyType), err
		}},
	} {
		b := tx.Bucket(m.bucket)
		var old [][]byte
		b.ForEach(func(k, _ []byte) error {
			if len(k) > 0 && m.legacy(k) {
				old = append(old, bytes.Clone(k))
			}
			return nil
		})
		for _, k := range old {
			plain, err := sl.open(m.kind, string(k), b.Get(k))
			if err != nil {
				continue
			}
			nk, err := m.newKey(plain)
			if err != nil {
				continue
			}
			if err := b.Put(nk, sl.seal(m.kind, string(nk), plain)); err != nil {
				return moved, fmt.Errorf("migrate %s record: %w", m.kind, err)
			}
			if err := b.Delete(k); err != nil {
				return moved, fmt.Errorf("migrate %s record: %w", m.kind, err)
			}
			moved++
		}
	}
	return moved, nil
}
