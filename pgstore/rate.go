package pgstore

import (
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// rateFresh is how recent a node's published count must be to count: a
// node that stopped publishing (stopped, or cut off) no longer holds
// back the others after a minute and a little.
const rateFresh = 70 * time.Second

// SyncRates publishes node's count of messages per key in the last
// minute (mine; a key at 0 is withdrawn) and returns what the other
// nodes last published, summed per key. One round trip.
func (s *Store) SyncRates(node string, mine map[string]int) (map[string]int, error) {
	ctx, cancel := ctxTimeout()
	defer cancel()
	b := &pgx.Batch{}
	keys := slices.Sorted(maps.Keys(mine)) // rows locked in one order
	for _, key := range keys {
		n := mine[key]
		if n <= 0 {
			b.Queue("DELETE FROM api_rate WHERE key_id = $1 AND node = $2", key, node)
			continue
		}
		b.Queue(`INSERT INTO api_rate (key_id, node, count, updated) VALUES ($1, $2, $3, now())
			ON CONFLICT (key_id, node) DO UPDATE SET count = excluded.count, updated = excluded.updated`, key, node, n)
	}
	// Stale rows go, but only those no other node holds locked at this
	// moment (its own sync): waiting for them deadlocked two nodes that
	// each held their own rows. Stale ones not removed are not counted.
	b.Queue(`DELETE FROM api_rate WHERE ctid IN (SELECT ctid FROM api_rate
		WHERE updated < now() - make_interval(secs => $1) FOR UPDATE SKIP LOCKED)`, rateFresh.Seconds())
	b.Queue(`SELECT key_id, sum(count)::int FROM api_rate
		WHERE node <> $1 AND updated >= now() - make_interval(secs => $2) GROUP BY key_id`, node, rateFresh.Seconds())
	br := s.pool.SendBatch(ctx, b)
	defer br.Close()
	for range b.Len() - 1 {
		if _, err := br.Exec(); err != nil {
			return nil, err
		}
	}
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	others := map[string]int{}
	for rows.Next() {
		var key string
		var n int
		if err := rows.Scan(&key, &n); err != nil {
			return nil, err
		}
		others[key] = n
	}
	return others, rows.Err()
}
