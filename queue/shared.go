package queue

import (
	"context"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Shared is what the nodes of a fleet share instead of keeping it in
// their spools (pgstore.Store implements it): the TLS history of
// destinations, the REST API's keys and the correspondents' key
// records. Its methods mean what the spool's own do.
type Shared interface {
	ObserveTLS(obs TLSObservation) error
	DomainInfo(domain string) (*DomainInfo, error)
	Domains() ([]DomainInfo, error)
	ResetDomain(domain string) error

	PutAPIKey(k APIKey) error
	APIKeyByID(id string) (*APIKey, error)
	APIKeys() ([]APIKey, error)
	RevokeAPIKey(id string, now time.Time) error

	PutKeyRecord(id string, data []byte) error
	DeleteKeyRecords(ids []string) error
	ForEachKeyRecord(prefix string, fn func(id string, data []byte) error) error
}

// UseShared makes the spool keep what a fleet shares in sh from now on:
// every caller — the scheduler, the monitor, the admin API, the CLI —
// then reads and writes it there, with no change of its own. It is set
// once, right after Open, before the store is used. What the spool held
// itself stays in the file (sealgate store migrate copies it over).
func (s *Store) UseShared(sh Shared) { s.shared = sh }

// keyJoinedFleet, in bucketMeta: when this spool's shared records were
// copied into a fleet's store (sealgate store migrate).
var keyJoinedFleet = []byte("joined-fleet")

// JoinedFleet reports when this spool's key records and escrow store
// were copied into a fleet's store (zero: never). A later migration
// leaves them alone: the fleet's copies have moved on since (keys
// removed, messages revoked), and this node's frozen copy must not
// bring anything back.
func (s *Store) JoinedFleet() (time.Time, error) {
	h, err := s.auditMetaTime(keyJoinedFleet)
	return h, err
}

// MarkJoinedFleet records that the copy is done.
func (s *Store) MarkJoinedFleet(at time.Time) error {
	return s.commit(context.Background(), 0, func(tx *bolt.Tx) error {
		return s.putMetaHead(tx, keyJoinedFleet, auditHead{Seq: uint64(at.Unix())})
	})
}

func (s *Store) auditMetaTime(key []byte) (time.Time, error) {
	var h auditHead
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		h, err = s.metaHead(tx, key)
		return err
	})
	if err != nil || h.Seq == 0 {
		return time.Time{}, err
	}
	return time.Unix(int64(h.Seq), 0).UTC(), nil
}

// FleetMark reads a mark this node keeps of its place in a fleet's
// shared records (name: "shipped", "signed"), zero when never set.
func (s *Store) FleetMark(name string) (uint64, string, error) {
	var h auditHead
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		h, err = s.metaHead(tx, []byte("fleet-mark-"+name))
		return err
	})
	return h.Seq, h.Hash, err
}

// SetFleetMark records a mark (it only moves forward).
func (s *Store) SetFleetMark(name string, seq uint64, hash string) error {
	return s.commit(context.Background(), 0, func(tx *bolt.Tx) error {
		key := []byte("fleet-mark-" + name)
		h, err := s.metaHead(tx, key)
		if err != nil || seq < h.Seq {
			return err
		}
		return s.putMetaHead(tx, key, auditHead{Seq: seq, Hash: hash})
	})
}
