package pgstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/sealgate/sealgate/queue"
)

// The escrow store's buckets (queue.SharedKV) in PostgreSQL: one
// serializable transaction per escrow change, retried when it conflicts
// with another node's, so that what the escrow decides in one
// transaction — a one-time code spent, a message revoked — holds
// fleet-wide exactly as it does in one node's spool.

// chunkSize is the largest value kept in one row; a larger one (an
// escrowed message's content) goes in chunks of this size.
const chunkSize = 1 << 20

// kvTxTimeout bounds one escrow transaction, retries included.
const kvTxTimeout = 60 * time.Second

// maxKVRetries bounds the retries of a transaction that conflicts.
const maxKVRetries = 20

// KVUpdate runs fn in a serializable transaction, retried on a conflict.
func (s *Store) KVUpdate(fn func(tx queue.KVTx) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), kvTxTimeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		err := s.kvRun(ctx, pgx.TxOptions{IsoLevel: pgx.Serializable}, fn)
		if !conflict(err) || attempt >= maxKVRetries {
			return err
		}
		// Another node's transaction won; try again after a short,
		// random pause so that the two do not meet again.
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(1+rand.IntN(10*(attempt+1))) * time.Millisecond):
		}
	}
}

// KVView runs fn in a read-only transaction that sees one snapshot.
func (s *Store) KVView(fn func(tx queue.KVTx) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), kvTxTimeout)
	defer cancel()
	return s.kvRun(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, fn)
}

func conflict(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01")
}

func (s *Store) kvRun(ctx context.Context, opts pgx.TxOptions, fn func(tx queue.KVTx) error) error {
	tx, err := s.pool.BeginTx(ctx, opts)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	t := &kvTx{ctx: ctx, tx: tx}
	if err := fn(t); err != nil {
		if t.err != nil {
			return t.err // a failed read or write is why fn failed
		}
		return err
	}
	if t.err != nil {
		return t.err
	}
	if err := tx.Commit(ctx); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			return err // the server answered: not committed (a conflict is retried)
		}
		return fmt.Errorf("%w: %v", queue.ErrCommitUnknown, err)
	}
	return nil
}

// kvTx is one transaction; the first database error sticks and fails
// the commit (Get cannot return one).
type kvTx struct {
	ctx context.Context
	tx  pgx.Tx
	err error
}

func (t *kvTx) fail(err error) error {
	if t.err == nil {
		t.err = err
	}
	return err
}

func (t *kvTx) Bucket(name []byte) queue.KVBucket { return &kvBucket{t: t, name: string(name)} }

type kvBucket struct {
	t    *kvTx
	name string
}

func (b *kvBucket) value(key, value []byte, chunks int) []byte {
	if chunks == 0 {
		if value == nil {
			value = []byte{}
		}
		return value
	}
	rows, err := b.t.tx.Query(b.t.ctx, "SELECT data FROM escrow_chunks WHERE bucket = $1 AND key = $2 ORDER BY n", b.name, key)
	if err != nil {
		b.t.fail(err)
		return nil
	}
	defer rows.Close()
	var out []byte
	n := 0
	for rows.Next() {
		var d []byte
		if err := rows.Scan(&d); err != nil {
			b.t.fail(err)
			return nil
		}
		out = append(out, d...)
		n++
	}
	if err := rows.Err(); err != nil {
		b.t.fail(err)
		return nil
	}
	if n != chunks {
		b.t.fail(errors.New("pgstore: escrow value is missing chunks"))
		return nil
	}
	return out
}

func (b *kvBucket) Get(key []byte) []byte {
	if b.t.err != nil {
		return nil
	}
	var v []byte
	var chunks int
	err := b.t.tx.QueryRow(b.t.ctx, "SELECT value, chunks FROM escrow_kv WHERE bucket = $1 AND key = $2", b.name, key).Scan(&v, &chunks)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		b.t.fail(err)
		return nil
	}
	return b.value(key, v, chunks)
}

func (b *kvBucket) Put(key, value []byte) error {
	if b.t.err != nil {
		return b.t.err
	}
	if len(value) <= chunkSize {
		_, err := b.t.tx.Exec(b.t.ctx, `INSERT INTO escrow_kv (bucket, key, value, chunks) VALUES ($1, $2, $3, 0)
			ON CONFLICT (bucket, key) DO UPDATE SET value = excluded.value, chunks = 0`, b.name, key, value)
		if err == nil {
			_, err = b.t.tx.Exec(b.t.ctx, "DELETE FROM escrow_chunks WHERE bucket = $1 AND key = $2", b.name, key)
		}
		if err != nil {
			return b.t.fail(err)
		}
		return nil
	}
	n := (len(value) + chunkSize - 1) / chunkSize
	if _, err := b.t.tx.Exec(b.t.ctx, `INSERT INTO escrow_kv (bucket, key, value, chunks) VALUES ($1, $2, '', $3)
		ON CONFLICT (bucket, key) DO UPDATE SET value = '', chunks = excluded.chunks`, b.name, key, n); err != nil {
		return b.t.fail(err)
	}
	if _, err := b.t.tx.Exec(b.t.ctx, "DELETE FROM escrow_chunks WHERE bucket = $1 AND key = $2", b.name, key); err != nil {
		return b.t.fail(err)
	}
	for i := 0; i < n; i++ {
		part := value[i*chunkSize : min(len(value), (i+1)*chunkSize)]
		if _, err := b.t.tx.Exec(b.t.ctx, "INSERT INTO escrow_chunks (bucket, key, n, data) VALUES ($1, $2, $3, $4)",
			b.name, key, i, part); err != nil {
			return b.t.fail(err)
		}
	}
	return nil
}

func (b *kvBucket) Delete(key []byte) error {
	if b.t.err != nil {
		return b.t.err
	}
	if _, err := b.t.tx.Exec(b.t.ctx, "DELETE FROM escrow_kv WHERE bucket = $1 AND key = $2", b.name, key); err != nil {
		return b.t.fail(err)
	}
	return nil
}

// ForEach calls fn for every key in order. The keys are read first, and
// each value as fn reaches it, so a bucket of large values is never held
// whole.
func (b *kvBucket) ForEach(fn func(k, v []byte) error) error {
	if b.t.err != nil {
		return b.t.err
	}
	rows, err := b.t.tx.Query(b.t.ctx, "SELECT key FROM escrow_kv WHERE bucket = $1 ORDER BY key", b.name)
	if err != nil {
		return b.t.fail(err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return b.t.fail(err)
	}
	for _, k := range keys {
		v := b.Get(k)
		if b.t.err != nil {
			return b.t.err
		}
		if v == nil {
			continue // deleted by fn itself
		}
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return nil
}

func (b *kvBucket) Cursor() queue.KVCursor { return &kvCursor{b: b} }

// kvCursor reads one row per step, in key order.
type kvCursor struct {
	b    *kvBucket
	last []byte
}

func (c *kvCursor) step(op string, from []byte) (k, v []byte) {
	b := c.b
	if b.t.err != nil {
		return nil, nil
	}
	var chunks int
	err := b.t.tx.QueryRow(b.t.ctx, "SELECT key, value, chunks FROM escrow_kv WHERE bucket = $1 AND key "+op+" $2 ORDER BY key LIMIT 1",
		b.name, from).Scan(&k, &v, &chunks)
	if errors.Is(err, pgx.ErrNoRows) {
		c.last = nil // past the end: Next finds nothing, as in bbolt
		return nil, nil
	}
	if err != nil {
		b.t.fail(err)
		c.last = nil
		return nil, nil
	}
	c.last = k
	return k, b.value(k, v, chunks)
}

func (c *kvCursor) First() (k, v []byte)           { return c.step(">=", []byte{}) }
func (c *kvCursor) Seek(seek []byte) (k, v []byte) { return c.step(">=", seek) }
func (c *kvCursor) Next() (k, v []byte) {
	if c.last == nil {
		return nil, nil
	}
	return c.step(">", c.last)
}
