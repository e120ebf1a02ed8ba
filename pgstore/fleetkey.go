package pgstore

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/jackc/pgx/v5"
	"github.com/sealgate/sealgate/internal/safeio"
)

// The fleet key (store.postgres.key_file): 32 bytes every node of a
// fleet holds and the database never sees. It seals what the database
// keeps but must not be able to use — the hashes of API key secrets,
// which are the keys of signed requests. The first node to start
// creates it and writes a key check into the database; a node with
// another key, or none while the check exists, is refused: copy the
// file from a node of the fleet.

var (
	// ErrFleetKeyMissing: the key file does not exist, but the fleet
	// has a key.
	ErrFleetKeyMissing = errors.New("pgstore: the fleet key is missing")
	// ErrFleetKeyWrong: the key file is not the fleet's key.
	ErrFleetKeyWrong = errors.New("pgstore: the fleet key does not match the fleet's")
	// errNoFleetKey: a store opened without the key cannot read sealed
	// records.
	errNoFleetKey = errors.New("pgstore: opened without the fleet key (store.postgres.key_file)")
)

const fleetCheckPlain = "sealgate fleet key check v1"

// loadFleetKey reads (or, for the fleet's first node, creates) the key
// and checks it against the database.
func (s *Store) loadFleetKey(ctx context.Context, path string) error {
	var check []byte
	err := s.pool.QueryRow(ctx, "SELECT value FROM sealgate_meta WHERE name = 'fleet-key-check'").Scan(&check)
	if err != nil && !isNoRows(err) {
		return err
	}
	key, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && check != nil:
		return fmt.Errorf("%w: %s does not exist; copy it from a node of the fleet", ErrFleetKeyMissing, path)
	case errors.Is(err, fs.ErrNotExist):
		key = make([]byte, 32)
		rand.Read(key)
		// Never replacing a key another process made meanwhile: then
		// that one is the key.
		if err := safeio.CreateFile(path, key, 0o600); errors.Is(err, fs.ErrExist) {
			if key, err = os.ReadFile(path); err != nil {
				return fmt.Errorf("store.postgres.key_file: %w", err)
			}
		} else if err != nil {
			return fmt.Errorf("store.postgres.key_file: %w", err)
		}
	case err != nil:
		return fmt.Errorf("store.postgres.key_file: %w", err)
	case len(key) != 32:
		return fmt.Errorf("store.postgres.key_file: %s holds %d bytes, not a 32-byte key", path, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return err
	}
	if s.aead, err = cipher.NewGCM(block); err != nil {
		return err
	}
	// The first node writes the check; the others prove their key
	// against it (two first nodes at once: one check wins, the other is
	// refused below).
	if _, err := s.pool.Exec(ctx, "INSERT INTO sealgate_meta (name, value) VALUES ('fleet-key-check', $1) ON CONFLICT DO NOTHING",
		s.seal("meta", "fleet-key-check", []byte(fleetCheckPlain))); err != nil {
		return err
	}
	if err := s.pool.QueryRow(ctx, "SELECT value FROM sealgate_meta WHERE name = 'fleet-key-check'").Scan(&check); err != nil {
		return err
	}
	if plain, err := s.open("meta", "fleet-key-check", check); err != nil || string(plain) != fleetCheckPlain {
		s.aead = nil
		return fmt.Errorf("%w: %s is not the key this fleet's database was sealed with", ErrFleetKeyWrong, path)
	}
	// API keys stored before their hashes were sealed (32 bytes; sealed
	// ones are longer) are sealed now, once, by the node that holds the key.
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, "SELECT id, hash FROM api_keys WHERE length(hash) = 32 FOR UPDATE")
		if err != nil {
			return err
		}
		type plainKey struct {
			ID   string
			Hash []byte
		}
		keys, err := pgx.CollectRows(rows, pgx.RowToStructByPos[plainKey])
		if err != nil {
			return err
		}
		for _, k := range keys {
			if _, err := tx.Exec(ctx, "UPDATE api_keys SET hash = $2 WHERE id = $1", k.ID, s.seal("api-key-hash", k.ID, k.Hash)); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *Store) seal(kind, id string, plain []byte) []byte {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	rand.Read(nonce)
	return s.aead.Seal(nonce, nonce, plain, []byte(kind+"\x00"+id))
}

func (s *Store) open(kind, id string, sealed []byte) ([]byte, error) {
	if s.aead == nil {
		return nil, errNoFleetKey
	}
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return nil, errors.New("pgstore: sealed value too short")
	}
	return s.aead.Open(nil, sealed[:n], sealed[n:], []byte(kind+"\x00"+id))
}
