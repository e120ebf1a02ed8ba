package pgstore

import (
	"strings"
	"time"

	"github.com/sealgate/sealgate/queue"
)

// Copying a single node's records into the shared store (sealgate store
// migrate): each copy merges, so running it again, or after an
// interruption, or from a second node, changes nothing it should not —
// what protects is never lowered.

// MergeDomain merges a domain record learned elsewhere: facts that raise
// protection accumulate, first seen is the earliest, the other times the
// latest; the MTA-STS mode and the probe state come from the record seen
// last.
func (s *Store) MergeDomain(d queue.DomainInfo) error {
	ctx, cancel := ctxTimeout()
	defer cancel()
	versions := d.TLSVersions
	if versions == nil {
		versions = []string{}
	}
	_, err := s.pool.Exec(ctx, `
INSERT INTO tls_domains AS d (domain, first_seen, last_seen, tls_seen, last_tls, tls_versions, verified,
	mta_sts_mode, dane, last_checked, probe_failing_since, last_probe_error)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (domain) DO UPDATE SET
	first_seen = least(d.first_seen, excluded.first_seen),
	last_seen = greatest(d.last_seen, excluded.last_seen),
	tls_seen = d.tls_seen OR excluded.tls_seen,
	last_tls = greatest(d.last_tls, excluded.last_tls),
	tls_versions = ARRAY(SELECT DISTINCT v FROM unnest(d.tls_versions || excluded.tls_versions) AS v ORDER BY v),
	verified = d.verified OR excluded.verified,
	mta_sts_mode = CASE WHEN excluded.last_seen > d.last_seen AND excluded.mta_sts_mode <> '' THEN excluded.mta_sts_mode ELSE d.mta_sts_mode END,
	dane = d.dane OR excluded.dane,
	last_checked = greatest(d.last_checked, excluded.last_checked),
	probe_failing_since = CASE WHEN excluded.last_checked > coalesce(d.last_checked, '-infinity') THEN excluded.probe_failing_since ELSE d.probe_failing_since END,
	last_probe_error = CASE WHEN excluded.last_checked > coalesce(d.last_checked, '-infinity') THEN excluded.last_probe_error ELSE d.last_probe_error END`,
		strings.ToLower(d.Domain), d.FirstSeen, d.LastSeen, d.TLSSeen, nullTime(d.LastTLS), versions, d.Verified,
		d.MTASTSMode, d.DANE, nullTime(d.LastChecked), nullTime(d.ProbeFailingSince), d.LastProbeError)
	return err
}

// MergeAPIKey adds a key the shared store lacks and reports whether it
// did; a key it has keeps its record, but a revocation is never lost.
func (s *Store) MergeAPIKey(k queue.APIKey) (added bool, err error) {
	if s.aead == nil {
		return false, errNoFleetKey
	}
	ctx, cancel := ctxTimeout()
	defer cancel()
	// xmax is 0 on a row this statement inserted, not on one it updated.
	err = s.pool.QueryRow(ctx, `INSERT INTO api_keys (id, name, scope, hash, domains, created, revoked, rate_per_minute, max_message_bytes)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO UPDATE SET revoked = coalesce(api_keys.revoked, excluded.revoked)
		RETURNING (xmax = 0)`, k.ID, k.Name, k.Scope, s.seal("api-key-hash", k.ID, k.Hash), k.Domains, k.Created, nullTime(k.Revoked),
		k.RatePerMinute, k.MaxMessageBytes).Scan(&added)
	return added, err
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// MergeKeyRecord adds a key record the shared store lacks and reports
// whether it did: a key removed from the fleet since is not brought
// back by a second run, nor one replaced overwritten.
func (s *Store) MergeKeyRecord(id string, data []byte) (added bool, err error) {
	ctx, cancel := ctxTimeout()
	defer cancel()
	tag, err := s.pool.Exec(ctx, "INSERT INTO key_records (id, data) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING", []byte(id), data)
	return err == nil && tag.RowsAffected() == 1, err
}
