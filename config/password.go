package config

import (
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// HashPassword returns a bcrypt hash (cost 12) of pw for
// inbound.auth.users[].password_hash.
func HashPassword(pw string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), 12)
	return string(h), err
}

// CheckPassword reports whether pw matches hash, a bcrypt hash or an
// argon2id PHC string. Both comparisons take constant time in pw.
func CheckPassword(hash, pw string) bool {
	if strings.HasPrefix(hash, "$argon2id$") {
		p, err := parseArgon2id(hash)
		if err != nil {
			return false
		}
		got := argon2.IDKey([]byte(pw), p.salt, p.time, p.memory, p.threads, uint32(len(p.key)))
		return subtle.ConstantTimeCompare(got, p.key) == 1
	}
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw)) == nil
}

// checkHashFormat accepts what CheckPassword can verify.
func checkHashFormat(hash string) error {
	switch {
	case hash == "":
		return errors.New("must not be empty (make one with: sealgate config hash-password)")
	case strings.HasPrefix(hash, "$argon2id$"):
		_, err := parseArgon2id(hash)
		return err
	case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"), strings.HasPrefix(hash, "$2y$"):
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return fmt.Errorf("not a valid bcrypt hash: %v", err)
		}
		return nil
	}
	return errors.New("expected a bcrypt ($2b$…) or argon2id ($argon2id$v=19$…) hash, never a plain password")
}

type argon2Params struct {
	memory  uint32
	time    uint32
	threads uint8
	salt    []byte
	key     []byte
}

// parseArgon2id reads "$argon2id$v=19$m=65536,t=3,p=4$<salt>$<key>"
// (unpadded base64, as the reference implementation writes it).
func parseArgon2id(s string) (*argon2Params, error) {
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return nil, errors.New("not a valid argon2id hash: want $argon2id$v=19$m=…,t=…,p=…$salt$key")
	}
	if parts[2] != "v=19" {
		return nil, fmt.Errorf("unsupported argon2id version %q (want v=19)", parts[2])
	}
	var p argon2Params
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.memory, &p.time, &p.threads); err != nil {
		return nil, fmt.Errorf("bad argon2id parameters %q", parts[3])
	}
	if p.memory == 0 || p.time == 0 || p.threads == 0 {
		return nil, fmt.Errorf("bad argon2id parameters %q", parts[3])
	}
	var err error
	if p.salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil || len(p.salt) < 8 {
		return nil, errors.New("bad argon2id salt")
	}
	if p.key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(p.key) < 16 {
		return nil, errors.New("bad argon2id key")
	}
	return &p, nil
}
