package queue

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	bolt "go.etcd.io/bbolt"

	"github.com/sealgate/sealgate/internal/safeio"
)

// The spool key.
//
// Every record is sealed with one 32-byte key kept in its own file
// (queue.key_file). Losing it, or pointing the config at another spool's
// key, must never cost the mail: a key that does not open the spool is
// refused at open (ErrWrongKey), and a missing key is only ever created
// for a spool that holds no record (otherwise ErrKeyMissing). The proof
// that a key belongs to a spool is the key-check record in the meta
// bucket: a constant sealed with the key when the spool was first
// opened. A spool written before the key check existed is accepted if
// the key opens one of its records, and then gets its key-check record.

// keySize is the spool key length: AES-256.
const keySize = 32

var (
	bucketMeta   = []byte("meta")
	keyCheckName = []byte("key-check")
)

const (
	kindMeta      = "meta"
	keyCheckPlain = "sealgate spool key check v1"
)

// legacyProbe bounds how many records of each bucket are tried when a
// spool without a key-check record is opened: one torn record must not
// condemn the key, and a large spool must not be read whole.
const legacyProbe = 8

// unlockSpool reads (or, for an empty spool, creates) the key and
// proves that it opens this spool. It runs with the spool's file lock
// held, so two processes cannot both create a key for one spool.
func unlockSpool(db *bolt.DB, keyFile, dbPath string) (*sealer, error) {
	var check []byte
	empty := true
	err := db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyCheckName); v != nil {
			check = append([]byte(nil), v...)
		}
		for _, b := range sealedBuckets() {
			if k, _ := tx.Bucket(b.name).Cursor().First(); k != nil {
				empty = false
			}
		}
		if k, _ := tx.Bucket(bucketQuarantine).Cursor().First(); k != nil {
			empty = false
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("open spool %s: %w", dbPath, err)
	}

	key, err := readKey(keyFile)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !empty:
		return nil, fmt.Errorf("%w: %s does not exist, but the spool %s holds records sealed with it; restore the key file from backup (a new key would open none of them)",
			ErrKeyMissing, keyFile, dbPath)
	case errors.Is(err, fs.ErrNotExist):
		// Nothing is sealed yet, so nothing can be lost: a new key,
		// and a new key-check record for it.
		key, err = createKey(keyFile)
		if err != nil {
			return nil, err
		}
		check = nil
	case err != nil:
		return nil, err
	}
	sl, err := newSealer(key)
	if err != nil {
		return nil, fmt.Errorf("spool key %s: %w", keyFile, err)
	}

	if check != nil {
		plain, err := sl.open(kindMeta, string(keyCheckName), check)
		if err != nil || string(plain) != keyCheckPlain {
			return nil, fmt.Errorf("%w: %s is not the key of the spool %s; point queue.key_file at the right key", ErrWrongKey, keyFile, dbPath)
		}
		return sl, nil
	}
	if !opensAnyRecord(db, sl) {
		return nil, fmt.Errorf("%w: %s opens none of the records of the spool %s; point queue.key_file at the right key", ErrWrongKey, keyFile, dbPath)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyCheckName, sl.seal(kindMeta, string(keyCheckName), []byte(keyCheckPlain)))
	})
	if err != nil {
		return nil, fmt.Errorf("open spool %s: %w", dbPath, err)
	}
	return sl, nil
}

// opensAnyRecord reports whether sl opens one of the first records of
// some bucket, or there is no record to try.
func opensAnyRecord(db *bolt.DB, sl *sealer) bool {
	tried, ok := 0, false
	db.View(func(tx *bolt.Tx) error {
		for _, b := range sealedBuckets() {
			c := tx.Bucket(b.name).Cursor()
			n := 0
			for k, v := c.First(); k != nil && n < legacyProbe && !ok; k, v = c.Next() {
				n++
				_, err := sl.open(b.kind, string(k), v)
				ok = err == nil
			}
			tried += n
		}
		return nil
	})
	return ok || tried == 0
}

// ReadKeyFile reads a spool key file with the checks Open applies, for
// handing an earlier key to RestoreQuarantined.
func ReadKeyFile(path string) ([]byte, error) { return readKey(path) }

// readKey reads the spool key, refusing a file that is not a regular
// file, that group or others may access, or that has the wrong size.
// The checks run on the opened file, so the file checked is the file
// read.
func readKey(path string) ([]byte, error) { return readKeyNamed("spool key", path) }

// readKeyNamed is readKey for a key file of another use (what names it
// in errors: "spool key", "escrow key").
func readKeyNamed(what, path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s %s is not a regular file", what, path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s %s: %w (mode %04o): only its owner may read it; chmod 600 it", what, path, safeio.ErrTooOpen, perm)
	}
	key, err := io.ReadAll(io.LimitReader(f, keySize+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	if len(key) != keySize {
		return nil, fmt.Errorf("%s %s has the wrong size (want %d bytes)", what, path, keySize)
	}
	return key, nil
}

// createKey writes a new random key, 0600, never over an existing file.
func createKey(path string) ([]byte, error) { return createKeyNamed("spool key", path) }

func createKeyNamed(what, path string) ([]byte, error) {
	key := make([]byte, keySize)
	rand.Read(key) // never fails (crypto/rand, Go 1.24+)
	if err := safeio.CreateFile(path, key, 0o600); err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	return key, nil
}
