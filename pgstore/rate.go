package pgstore

import (
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// The current minute of the database's clock: every node counts in the
// same windows, whatever its own clock says.
const sqlMinute = "floor(extract(epoch from now()) / 60)::bigint"

// TakeRate reserves n messages of key's limit per minute across the
// fleet, or says how long to wait. The window slides: this minute's
// count plus the last minute's, weighted by the part of it still within
// the last 60 seconds. One round trip; the row is locked only while it
// is checked and raised.
func (s *Store) TakeRate(key string, n, limit int) (bool, time.Duration, error) {
	ctx, cancel := ctxTimeout()
	defer cancel()
	b := &pgx.Batch{}
	b.Queue("INSERT INTO api_rate (key_id, minute, count) VALUES ($1, "+sqlMinute+", 0) ON CONFLICT DO NOTHING", key)
	b.Queue("DELETE FROM api_rate WHERE key_id = $1 AND minute < "+sqlMinute+" - 1", key)
	b.Queue(`UPDATE api_rate AS r SET count = r.count + $2
		WHERE r.key_id = $1 AND r.minute = `+sqlMinute+`
		AND r.count + $2 + coalesce((SELECT p.count FROM api_rate p WHERE p.key_id = $1 AND p.minute = r.minute - 1), 0)
			* (1 - mod(extract(epoch from now())::numeric, 60) / 60) <= $3
		RETURNING count`, key, n, limit)
	br := s.pool.SendBatch(ctx, b)
	defer br.Close()
	for range 2 {
		if _, err := br.Exec(); err != nil {
			return false, 0, err
		}
	}
	var count int
	err := br.QueryRow().Scan(&count)
	if errors.Is(err, pgx.ErrNoRows) {
		// Refused: the window has moved on by the next minute.
		return false, time.Duration(60-time.Now().Second()) * time.Second, nil
	}
	if err != nil {
		return false, 0, err
	}
	return true, 0, nil
}

// GiveRate hands back n messages key reserved moments ago, which queued
// nothing (a repeated idempotent send).
func (s *Store) GiveRate(key string, n int) error {
	ctx, cancel := ctxTimeout()
	defer cancel()
	// From this minute's count, or the last one's when a minute began
	// since they were taken.
	_, err := s.pool.Exec(ctx, `WITH cur AS (
			UPDATE api_rate SET count = count - $2 WHERE key_id = $1 AND minute = `+sqlMinute+` AND count >= $2 RETURNING 1)
		UPDATE api_rate SET count = greatest(count - $2, 0)
		WHERE key_id = $1 AND minute = `+sqlMinute+` - 1 AND NOT EXISTS (SELECT 1 FROM cur)`, key, n)
	return err
}
