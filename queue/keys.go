package queue

import (
	"bytes"
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// bucketKeys holds correspondents' public keys for the certs room's key
// store. The spool only keeps them sealed; what a record means is the
// certs room's business (queue does not import certs).
var bucketKeys = []byte("keys")

const kindKey = "key"

// PutKeyRecord stores (or replaces) one sealed key record.
func (s *Store) PutKeyRecord(id string, data []byte) error {
	if s.shared != nil {
		return s.shared.PutKeyRecord(id, data)
	}
	return s.commit(context.Background(), len(data), func(tx *bolt.Tx) error {
		return tx.Bucket(bucketKeys).Put([]byte(id), s.seal.seal(kindKey, id, data))
	})
}

// DeleteKeyRecords removes key records; IDs that are not there are
// ignored.
func (s *Store) DeleteKeyRecords(ids []string) error {
	if s.shared != nil {
		return s.shared.DeleteKeyRecords(ids)
	}
	return s.commit(context.Background(), 0, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKeys)
		for _, id := range ids {
			if err := b.Delete([]byte(id)); err != nil {
				return err
			}
		}
		return nil
	})
}

// ForEachKeyRecord calls fn with each key record whose ID starts with
// prefix, in ID order. A record that does not open is an error: a key
// store that silently loses a key would send mail the policy meant to
// encrypt down another path without saying why.
func (s *Store) ForEachKeyRecord(prefix string, fn func(id string, data []byte) error) error {
	if s.shared != nil {
		return s.shared.ForEachKeyRecord(prefix, fn)
	}
	return s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketKeys).Cursor()
		p := []byte(prefix)
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			plain, err := s.seal.open(kindKey, string(k), v)
			if err != nil {
				return fmt.Errorf("%w: key record %q: %v", errCorrupt, k, err)
			}
			if err := fn(string(k), plain); err != nil {
				return err
			}
		}
		return nil
	})
}
