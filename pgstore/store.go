package pgstore

import (
	"context"
	"crypto/cipher"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// lockMigrate and lockLeader are the advisory lock keys of the schema
// migration and of the leader election ("sealgate" in ASCII, then 1 and
// 2): the same on every node, unlikely to meet another application's.
const (
	lockMigrate int64 = 0x7365616c67617401
	lockLeader  int64 = 0x7365616c67617402
)

// Store is a connection pool to the fleet's database.
type Store struct {
	pool   *pgxpool.Pool
	logger *slog.Logger
	now    func() time.Time
	aead   cipher.AEAD // the fleet key's (fleetkey.go); nil when opened without it
}

// Options configure Open.
type Options struct {
	DSN    string
	Logger *slog.Logger
	Now    func() time.Time // nil: time.Now
	// ConnectTimeout bounds the first connection (0: 30 s).
	ConnectTimeout time.Duration
	// KeyFile is the fleet key (fleetkey.go), needed for the API keys;
	// "" opens without it (audit verification, search).
	KeyFile string
}

// ErrSchemaTooNew is returned by Open when the database was migrated by
// a newer sealgate than this one.
var ErrSchemaTooNew = errors.New("pgstore: the database schema is newer than this sealgate")

// Open connects to the database and brings its schema up to date.
func Open(ctx context.Context, o Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(o.DSN)
	if err != nil {
		return nil, fmt.Errorf("store.postgres.dsn: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store.postgres: %w", err)
	}
	s := &Store{pool: pool, logger: o.Logger, now: o.Now}
	cctx, cancel := context.WithTimeout(ctx, cmpDuration(o.ConnectTimeout, 30*time.Second))
	defer cancel()
	if err := s.migrate(cctx); err != nil {
		pool.Close()
		return nil, err
	}
	if o.KeyFile != "" {
		if err := s.loadFleetKey(cctx, o.KeyFile); err != nil {
			pool.Close()
			return nil, err
		}
	}
	return s, nil
}

func cmpDuration(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Close closes the pool.
func (s *Store) Close() { s.pool.Close() }

// Ping checks that the database answers (readiness).
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// migration is one embedded schema step.
type migration struct {
	version int
	name    string
	sql     string
}

func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("pgstore: migration file %s is not NNNN_name.sql", e.Name())
		}
		b, err := migrationFiles.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: e.Name(), sql: string(b)})
	}
	slices.SortFunc(out, func(a, b migration) int { return a.version - b.version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("pgstore: migration %s out of sequence", m.name)
		}
	}
	return out, nil
}

// SchemaVersion is the newest schema this build knows.
func SchemaVersion() int {
	ms, _ := migrations()
	return len(ms)
}

// migrate applies the migrations the database lacks, each in its own
// transaction, holding the migration lock so that nodes starting
// together do not race.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("store.postgres: cannot connect: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", lockMigrate); err != nil {
		return fmt.Errorf("store.postgres: migration lock: %w", err)
	}
	defer conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", lockMigrate)
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS sealgate_schema (
		version integer PRIMARY KEY,
		name    text NOT NULL,
		applied timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("store.postgres: %w", err)
	}
	var have int
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM sealgate_schema").Scan(&have); err != nil {
		return fmt.Errorf("store.postgres: reading the schema version: %w", err)
	}
	if have > len(ms) {
		return fmt.Errorf("%w: the database is at schema version %d, this sealgate knows %d; upgrade this node", ErrSchemaTooNew, have, len(ms))
	}
	for _, m := range ms[have:] {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO sealgate_schema (version, name) VALUES ($1, $2)", m.version, m.name)
			return err
		})
		if err != nil {
			return fmt.Errorf("store.postgres: migration %s: %w", m.name, err)
		}
		s.logger.Info("shared store schema migrated", "version", m.version, "migration", m.name)
	}
	return nil
}

func isNoRows(err error) bool { return errors.Is(err, pgx.ErrNoRows) }
