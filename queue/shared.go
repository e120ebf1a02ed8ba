package queue

import "time"

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
