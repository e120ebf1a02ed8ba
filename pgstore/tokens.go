package pgstore

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// PutToken stores an access token's principal (opaque to the store) by
// the token's hash until expires, and clears expired tokens.
func (s *Store) PutToken(hash string, principal []byte, expires time.Time) error {
	ctx, cancel := ctxTimeout()
	defer cancel()
	if _, err := s.pool.Exec(ctx, "INSERT INTO oauth_tokens (hash, principal, expires) VALUES ($1, $2, $3)",
		hash, principal, expires); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, "DELETE FROM oauth_tokens WHERE expires < $1", s.now())
	return err
}

// Token returns the principal of a token that has not expired at now.
func (s *Store) Token(hash string, now time.Time) ([]byte, bool, error) {
	ctx, cancel := ctxTimeout()
	defer cancel()
	var p []byte
	err := s.pool.QueryRow(ctx, "SELECT principal FROM oauth_tokens WHERE hash = $1 AND expires >= $2", hash, now).Scan(&p)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	return p, err == nil, err
}

// DeleteToken revokes a token on every node.
func (s *Store) DeleteToken(hash string) error {
	ctx, cancel := ctxTimeout()
	defer cancel()
	_, err := s.pool.Exec(ctx, "DELETE FROM oauth_tokens WHERE hash = $1", hash)
	return err
}

// nonceKeep is how long a signed request's nonce is remembered: twice
// the ±5 minute window a signed request is accepted in.
const nonceKeep = 10 * time.Minute

// FreshNonce records a signed request's nonce and reports whether no
// node had seen it (a replay to another node is refused too).
func (s *Store) FreshNonce(nonce string) (bool, error) {
	h := sha256.Sum256([]byte(nonce)) // any bytes; the column is text
	nonce = hex.EncodeToString(h[:])
	ctx, cancel := ctxTimeout()
	defer cancel()
	// The database's clock, not the nodes': one node's clock ahead must
	// not forget a nonce early for the others.
	if _, err := s.pool.Exec(ctx, "DELETE FROM api_nonces WHERE seen < now() - make_interval(secs => $1)", nonceKeep.Seconds()); err != nil {
		return false, err
	}
	tag, err := s.pool.Exec(ctx, "INSERT INTO api_nonces (nonce, seen) VALUES ($1, now()) ON CONFLICT DO NOTHING", nonce)
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}
