package certs

import (
	"fmt"
	"time"
)

// ParseArchiveKey reads the organisation's archive key
// (keys.archive_key_file): exactly one armored or binary OpenPGP public
// key that every PGP/MIME message is also encrypted to. It is checked as
// an import is — no private key, not expired or revoked, able to
// encrypt, RSA of at least 2048 bits — except that it needs no email
// user ID: it is nobody's mailbox. Errors wrap ErrBadKey.
func ParseArchiveKey(data []byte, now time.Time) (*OpenPGPRecipient, error) {
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("%w: larger than %d MiB", ErrBadKey, maxKeyFile>>20)
	}
	entities, err := readEntities(data)
	if err != nil {
		return nil, err
	}
	if len(entities) != 1 {
		return nil, fmt.Errorf("%w: %d keys in the file; the archive key file must hold exactly one", ErrBadKey, len(entities))
	}
	e := entities[0]
	enc, expires, err := usableEntity(e, now)
	if err != nil {
		return nil, fmt.Errorf("%w: key %s: %v", ErrBadKey, fingerprint(e.PrimaryKey), err)
	}
	return &OpenPGPRecipient{
		Key: Key{
			Kind: KindOpenPGP, Fingerprint: fingerprint(e.PrimaryKey), Algorithm: algorithmName(enc.PublicKey),
			Created: e.PrimaryKey.CreationTime.UTC(), Expires: expires,
		},
		entity: e,
	}, nil
}

// Usable says whether r can still be encrypted to at now (it may have
// expired since it was read); the error says why not.
func (r *OpenPGPRecipient) Usable(now time.Time) error {
	if _, _, err := usableEntity(r.entity, now); err != nil {
		return fmt.Errorf("key %s: %v", r.Key.Fingerprint, err)
	}
	return nil
}
