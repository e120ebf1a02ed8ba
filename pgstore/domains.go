package pgstore

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sealgate/sealgate/queue"
)

// queryTimeout bounds one statement: a database that stops answering
// fails the caller (a delivery then waits) instead of hanging it.
const queryTimeout = 10 * time.Second

func ctxTimeout() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), queryTimeout)
}

// observeSQL merges an observation in one statement, so that two nodes
// writing at once cannot lower what either learned: the TLS and
// verification facts, DANE and the versions only accumulate (OR, a
// union), times only move forward, and the probe fields change only for
// a probe. $3 is "the session used TLS", $8 "this is a probe".
const observeSQL = `
INSERT INTO tls_domains AS d (domain, first_seen, last_seen, tls_seen, last_tls, tls_versions, verified,
	mta_sts_mode, dane, last_checked, probe_failing_since, last_probe_error)
VALUES ($1, $2, $2, $3, CASE WHEN $3 THEN $2::timestamptz END, $4, $5 AND $3, $6, $7,
	CASE WHEN $8 THEN $2::timestamptz END, CASE WHEN $8 AND NOT $3 THEN $2::timestamptz END,
	CASE WHEN $8 AND NOT $3 THEN $9 ELSE '' END)
ON CONFLICT (domain) DO UPDATE SET
	last_seen = greatest(d.last_seen, excluded.last_seen),
	tls_seen = d.tls_seen OR excluded.tls_seen,
	last_tls = greatest(d.last_tls, excluded.last_tls),
	tls_versions = ARRAY(SELECT DISTINCT v FROM unnest(d.tls_versions || excluded.tls_versions) AS v ORDER BY v),
	verified = d.verified OR excluded.verified,
	mta_sts_mode = CASE WHEN excluded.mta_sts_mode <> '' THEN excluded.mta_sts_mode ELSE d.mta_sts_mode END,
	dane = d.dane OR excluded.dane,
	last_checked = CASE WHEN $8 THEN greatest(d.last_checked, excluded.last_checked) ELSE d.last_checked END,
	probe_failing_since = CASE WHEN NOT $8 THEN d.probe_failing_since WHEN $3 THEN NULL
		ELSE coalesce(d.probe_failing_since, excluded.probe_failing_since) END,
	last_probe_error = CASE WHEN NOT $8 THEN d.last_probe_error WHEN $3 THEN '' ELSE excluded.last_probe_error END`

// ObserveTLS merges a delivery's or probe's view of a domain into the
// shared history (queue.Store.ObserveTLS's meaning).
func (s *Store) ObserveTLS(obs queue.TLSObservation) error {
	domain := strings.ToLower(obs.Domain)
	if domain == "" {
		return nil
	}
	versions := []string{}
	if obs.TLSVersion != "" {
		versions = []string{obs.TLSVersion}
	}
	ctx, cancel := ctxTimeout()
	defer cancel()
	_, err := s.pool.Exec(ctx, observeSQL, domain, s.now().UTC(), obs.TLSVersion != "", versions, obs.Verified,
		obs.MTASTSMode, obs.DANE, obs.Probe, obs.Error)
	return err
}

const domainColumns = `domain, first_seen, last_seen, tls_seen, last_tls, tls_versions, verified, mta_sts_mode, dane,
	last_checked, probe_failing_since, last_probe_error`

func scanDomain(row pgx.Row) (*queue.DomainInfo, error) {
	var d queue.DomainInfo
	var lastTLS, lastChecked, failing *time.Time
	err := row.Scan(&d.Domain, &d.FirstSeen, &d.LastSeen, &d.TLSSeen, &lastTLS, &d.TLSVersions, &d.Verified,
		&d.MTASTSMode, &d.DANE, &lastChecked, &failing, &d.LastProbeError)
	if err != nil {
		return nil, err
	}
	for _, t := range []struct {
		from *time.Time
		to   *time.Time
	}{{lastTLS, &d.LastTLS}, {lastChecked, &d.LastChecked}, {failing, &d.ProbeFailingSince}} {
		if t.from != nil {
			*t.to = t.from.UTC()
		}
	}
	d.FirstSeen, d.LastSeen = d.FirstSeen.UTC(), d.LastSeen.UTC()
	if len(d.TLSVersions) == 0 {
		d.TLSVersions = nil
	}
	return &d, nil
}

// DomainInfo returns a domain's record, nil when there is none.
func (s *Store) DomainInfo(domain string) (*queue.DomainInfo, error) {
	ctx, cancel := ctxTimeout()
	defer cancel()
	d, err := scanDomain(s.pool.QueryRow(ctx, "SELECT "+domainColumns+" FROM tls_domains WHERE domain = $1", strings.ToLower(domain)))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	return d, err
}

// Domains lists every domain record, by name.
func (s *Store) Domains() ([]queue.DomainInfo, error) {
	ctx, cancel := ctxTimeout()
	defer cancel()
	rows, err := s.pool.Query(ctx, "SELECT "+domainColumns+" FROM tls_domains ORDER BY domain")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []queue.DomainInfo
	for rows.Next() {
		d, err := scanDomain(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *d)
	}
	return out, rows.Err()
}

// ResetDomain forgets a domain on every node (queue.ErrNotFound when
// there is no record).
func (s *Store) ResetDomain(domain string) error {
	ctx, cancel := ctxTimeout()
	defer cancel()
	tag, err := s.pool.Exec(ctx, "DELETE FROM tls_domains WHERE domain = $1", strings.ToLower(domain))
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return queue.ErrNotFound
	}
	return nil
}
