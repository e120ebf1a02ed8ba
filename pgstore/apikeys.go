package pgstore

import (
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/sealgate/sealgate/queue"
)

// The REST API's keys, shared so that a key created through one node
// works on all (only a hash of each secret is kept, as in the spool).

// PutAPIKey stores a new key; an ID in use is refused.
func (s *Store) PutAPIKey(k queue.APIKey) error {
	if s.aead == nil {
		return errNoFleetKey
	}
	ctx, cancel := ctxTimeout()
	defer cancel()
	var revoked *time.Time
	if !k.Revoked.IsZero() {
		revoked = &k.Revoked
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO api_keys (id, name, scope, hash, domains, created, revoked, rate_per_minute, max_message_bytes)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, k.ID, k.Name, k.Scope, s.seal("api-key-hash", k.ID, k.Hash), k.Domains, k.Created, revoked,
		k.RatePerMinute, k.MaxMessageBytes)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" { // unique_violation
		return errors.New("pgstore: API key ID in use")
	}
	return err
}

const apiKeyColumns = "id, name, scope, hash, domains, created, revoked, rate_per_minute, max_message_bytes"

// scanAPIKey reads a key; its hash is sealed under the fleet key (a
// database dump signs no request).
func (s *Store) scanAPIKey(row pgx.Row) (*queue.APIKey, error) {
	var k queue.APIKey
	var revoked *time.Time
	var sealed []byte
	if err := row.Scan(&k.ID, &k.Name, &k.Scope, &sealed, &k.Domains, &k.Created, &revoked, &k.RatePerMinute, &k.MaxMessageBytes); err != nil {
		return nil, err
	}
	hash, err := s.open("api-key-hash", k.ID, sealed)
	if err != nil {
		return nil, fmt.Errorf("pgstore: API key %s does not open: %w", k.ID, err)
	}
	k.Hash = hash
	if revoked != nil {
		k.Revoked = revoked.UTC()
	}
	k.Created = k.Created.UTC()
	return &k, nil
}

// APIKeyByID returns a key (queue.ErrNotFound when there is none).
func (s *Store) APIKeyByID(id string) (*queue.APIKey, error) {
	ctx, cancel := ctxTimeout()
	defer cancel()
	k, err := s.scanAPIKey(s.pool.QueryRow(ctx, "SELECT "+apiKeyColumns+" FROM api_keys WHERE id = $1", id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, queue.ErrNotFound
	}
	return k, err
}

// APIKeys lists every key, revoked ones too, by ID.
func (s *Store) APIKeys() ([]queue.APIKey, error) {
	ctx, cancel := ctxTimeout()
	defer cancel()
	rows, err := s.pool.Query(ctx, "SELECT "+apiKeyColumns+" FROM api_keys ORDER BY id")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []queue.APIKey
	for rows.Next() {
		k, err := s.scanAPIKey(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *k)
	}
	return out, rows.Err()
}

// RevokeAPIKey ends a key at now on every node (queue.ErrNotFound when
// there is none); a key revoked earlier keeps its first revocation time.
func (s *Store) RevokeAPIKey(id string, now time.Time) error {
	ctx, cancel := ctxTimeout()
	defer cancel()
	tag, err := s.pool.Exec(ctx, "UPDATE api_keys SET revoked = coalesce(revoked, $2) WHERE id = $1", id, now)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return queue.ErrNotFound
	}
	return nil
}
