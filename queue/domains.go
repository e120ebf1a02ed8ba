package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

var bucketDomains = []byte("domains")

const kindDomain = "domain"

// DomainInfo is what sealgate has learned about a destination domain's
// TLS: the record behind "TLS domain monitoring". TLSSeen and Verified
// only ever go from false to true, except by ResetDomain: once a domain
// has taken mail over TLS, a later connection without it is an attack or
// a fault, and must not receive mail in plaintext.
type DomainInfo struct {
	Domain    string    `json:"domain"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	// TLSSeen: a delivery or probe has completed a TLS handshake.
	TLSSeen bool      `json:"tls_seen"`
	LastTLS time.Time `json:"last_tls,omitzero"`
	// TLSVersions seen, e.g. ["TLS1.2", "TLS1.3"].
	TLSVersions []string `json:"tls_versions,omitempty"`
	// Verified: a certificate valid for the MX host has been seen.
	Verified   bool   `json:"verified"`
	MTASTSMode string `json:"mta_sts_mode,omitempty"`
	DANE       bool   `json:"dane,omitempty"`
	// LastChecked is the last probe; ProbeFailingSince the first of the
	// current run of probes that found no TLS (zero when the last one did).
	LastChecked       time.Time `json:"last_checked,omitzero"`
	ProbeFailingSince time.Time `json:"probe_failing_since,omitzero"`
	LastProbeError    string    `json:"last_probe_error,omitempty"`
}

// TLSObservation is one delivery attempt's or probe's view of a domain.
type TLSObservation struct {
	Domain     string
	Probe      bool   // from the prober, not a delivery
	Connected  bool   // an SMTP session was established
	TLSVersion string // "" when the session stayed in plaintext
	Verified   bool
	MTASTSMode string
	DANE       bool
	Error      string // what went wrong, for probes
}

// ObserveTLS merges an observation into the domain's record, creating it
// on first sight. Facts that raise protection stick; nothing lowers them.
func (s *Store) ObserveTLS(obs TLSObservation) error {
	if s.shared != nil {
		return s.shared.ObserveTLS(obs)
	}
	domain := strings.ToLower(obs.Domain)
	if domain == "" {
		return nil
	}
	return s.commit(context.Background(), 0, func(tx *bolt.Tx) error {
		now := s.now()
		d, err := s.getDomain(tx, domain)
		if err != nil {
			return err
		}
		if d == nil {
			d = &DomainInfo{Domain: domain, FirstSeen: now}
		}
		d.LastSeen = now
		if obs.TLSVersion != "" {
			d.TLSSeen, d.LastTLS = true, now
			if !slices.Contains(d.TLSVersions, obs.TLSVersion) {
				d.TLSVersions = append(d.TLSVersions, obs.TLSVersion)
				slices.Sort(d.TLSVersions)
			}
			d.Verified = d.Verified || obs.Verified
		}
		if obs.MTASTSMode != "" {
			d.MTASTSMode = obs.MTASTSMode
		}
		d.DANE = d.DANE || obs.DANE
		if obs.Probe {
			d.LastChecked = now
			if obs.TLSVersion != "" {
				d.ProbeFailingSince, d.LastProbeError = time.Time{}, ""
			} else {
				if d.ProbeFailingSince.IsZero() {
					d.ProbeFailingSince = now
				}
				d.LastProbeError = obs.Error
			}
		}
		return s.putDomain(tx, d)
	})
}

// DomainInfo returns the record of domain, or nil when there is none.
func (s *Store) DomainInfo(domain string) (*DomainInfo, error) {
	if s.shared != nil {
		return s.shared.DomainInfo(domain)
	}
	var d *DomainInfo
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		d, err = s.getDomain(tx, strings.ToLower(domain))
		return err
	})
	return d, err
}

// Domains lists every domain record, by name.
func (s *Store) Domains() ([]DomainInfo, error) {
	if s.shared != nil {
		return s.shared.Domains()
	}
	var out []DomainInfo
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDomains).ForEach(func(k, v []byte) error {
			d, err := s.decodeDomain(k, v)
			if err != nil {
				s.logger.Error("unreadable domain record skipped", "key", fmt.Sprintf("%x", k), "err", err)
				return nil
			}
			out = append(out, *d)
			return nil
		})
	})
	return out, err
}

// ResetDomain forgets what was learned about domain (an admin's decision
// after a partner really dropped TLS). ErrNotFound if there is no record.
func (s *Store) ResetDomain(domain string) error {
	if s.shared != nil {
		return s.shared.ResetDomain(domain)
	}
	return s.commit(context.Background(), 0, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDomains)
		key := s.seal.indexKey(kindDomain, strings.ToLower(domain))
		if b.Get(key) == nil {
			return ErrNotFound
		}
		return b.Delete(key)
	})
}

func (s *Store) getDomain(tx *bolt.Tx, domain string) (*DomainInfo, error) {
	key := s.seal.indexKey(kindDomain, domain)
	v := tx.Bucket(bucketDomains).Get(key)
	if v == nil {
		return nil, nil
	}
	return s.decodeDomain(key, v)
}

func (s *Store) decodeDomain(key, sealed []byte) (*DomainInfo, error) {
	plain, err := s.seal.open(kindDomain, string(key), sealed)
	if err != nil {
		return nil, err
	}
	var d DomainInfo
	if err := json.Unmarshal(plain, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

func (s *Store) putDomain(tx *bolt.Tx, d *DomainInfo) error {
	data, err := json.Marshal(d)
	if err != nil {
		return err
	}
	key := s.seal.indexKey(kindDomain, d.Domain)
	return tx.Bucket(bucketDomains).Put(key, s.seal.seal(kindDomain, string(key), data))
}
