package queue

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	bolt "go.etcd.io/bbolt"
)

// API keys for the REST API: only a hash of each secret is kept, sealed
// like every spool record.

var bucketAPIKeys = []byte("api-keys")

const kindAPIKey = "api-key"

// APIKey is one credential of the REST API.
type APIKey struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Scope string `json:"scope"` // read, send or admin
	Hash  []byte `json:"hash"`  // SHA-256 of the secret
	// Domains are the sender domains a send key may use (and their
	// subdomains); nil for keys that send for none or any (admin).
	Domains []string `json:"domains,omitempty"`
	// RatePerMinute and MaxMessageBytes are the key's own send limits;
	// 0 leaves them to the node's settings (api.messages_per_minute,
	// inbound.max_message_bytes).
	RatePerMinute   int       `json:"rate_per_minute,omitempty"`
	MaxMessageBytes int64     `json:"max_message_bytes,omitempty"`
	Created         time.Time `json:"created"`
	Revoked         time.Time `json:"revoked,omitzero"`
}

// PutAPIKey stores a new key; an ID in use is refused.
func (s *Store) PutAPIKey(k APIKey) error {
	if s.shared != nil {
		return s.shared.PutAPIKey(k)
	}
	return s.commit(context.Background(), 0, func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketAPIKeys)
		if err != nil {
			return err
		}
		if b.Get([]byte(k.ID)) != nil {
			return errors.New("queue: API key ID in use")
		}
		return s.putAPIKey(b, k)
	})
}

func (s *Store) putAPIKey(b *bolt.Bucket, k APIKey) error {
	data, err := json.Marshal(k)
	if err != nil {
		return err
	}
	return b.Put([]byte(k.ID), s.seal.seal(kindAPIKey, k.ID, data))
}

// APIKeyByID returns a key (ErrNotFound when there is none).
func (s *Store) APIKeyByID(id string) (*APIKey, error) {
	if s.shared != nil {
		return s.shared.APIKeyByID(id)
	}
	var k *APIKey
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAPIKeys)
		if b == nil {
			return ErrNotFound
		}
		v := b.Get([]byte(id))
		if v == nil {
			return ErrNotFound
		}
		plain, err := s.seal.open(kindAPIKey, id, v)
		if err != nil {
			return err
		}
		k = &APIKey{}
		return json.Unmarshal(plain, k)
	})
	return k, err
}

// APIKeys lists every key, revoked ones too, by ID.
func (s *Store) APIKeys() ([]APIKey, error) {
	if s.shared != nil {
		return s.shared.APIKeys()
	}
	var out []APIKey
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAPIKeys)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			plain, err := s.seal.open(kindAPIKey, string(k), v)
			if err != nil {
				return err
			}
			var key APIKey
			if err := json.Unmarshal(plain, &key); err != nil {
				return err
			}
			out = append(out, key)
			return nil
		})
	})
	return out, err
}

// RevokeAPIKey ends a key at now (ErrNotFound when there is none).
func (s *Store) RevokeAPIKey(id string, now time.Time) error {
	if s.shared != nil {
		return s.shared.RevokeAPIKey(id, now)
	}
	return s.commit(context.Background(), 0, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAPIKeys)
		if b == nil || b.Get([]byte(id)) == nil {
			return ErrNotFound
		}
		plain, err := s.seal.open(kindAPIKey, id, b.Get([]byte(id)))
		if err != nil {
			return err
		}
		var k APIKey
		if err := json.Unmarshal(plain, &k); err != nil {
			return err
		}
		if k.Revoked.IsZero() {
			k.Revoked = now
		}
		return s.putAPIKey(b, k)
	})
}
