package queue

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

var bucketMTASTS = []byte("mta-sts")

const kindMTASTS = "mta-sts"

// MTASTSEntry is a cached MTA-STS policy (RFC 8461 §5.1): the policy body
// as fetched, the id of the TXT record it belongs to, and when it expires
// (fetch time plus its max_age). A cached policy keeps applying while a
// later fetch fails: that is what protects the first delivery after an
// attacker blocks the policy host.
type MTASTSEntry struct {
	Domain    string    `json:"domain"`
	ID        string    `json:"id"`
	Body      []byte    `json:"body"`
	FetchedAt time.Time `json:"fetched_at"`
	Expires   time.Time `json:"expires"`
}

// MTASTS returns the cached policy of domain, or nil.
func (s *Store) MTASTS(domain string) (*MTASTSEntry, error) {
	var e *MTASTSEntry
	err := s.view(func(tx *bolt.Tx) error {
		key := s.seal.indexKey(kindMTASTS, strings.ToLower(domain))
		v := tx.Bucket(bucketMTASTS).Get(key)
		if v == nil {
			return nil
		}
		plain, err := s.seal.open(kindMTASTS, string(key), v)
		if err != nil {
			return err
		}
		e = new(MTASTSEntry)
		return json.Unmarshal(plain, e)
	})
	return e, err
}

// PutMTASTS stores (or replaces) a domain's cached policy.
func (s *Store) PutMTASTS(e MTASTSEntry) error {
	e.Domain = strings.ToLower(e.Domain)
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return s.commit(context.Background(), len(data), func(tx *bolt.Tx) error {
		key := s.seal.indexKey(kindMTASTS, e.Domain)
		return tx.Bucket(bucketMTASTS).Put(key, s.seal.seal(kindMTASTS, string(key), data))
	})
}
