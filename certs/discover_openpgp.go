package certs

import (
	"fmt"
	"time"
)

// MaxDiscoveredKeyBytes bounds what one directory answer may hold: a
// key with its self-signatures and a few certifications is a few KiB;
// a directory serving more is refused, not read further.
const MaxDiscoveredKeyBytes = 256 << 10

// DiscoveredOpenPGP checks the OpenPGP keys a directory (WKD, an
// OPENPGPKEY record) served for address and returns the store entries
// usable for it, marked with source. The checks are those of an import
// (ParseOpenPGP), but one answer may hold several keys, and a key that
// fails them — expired, revoked, unable to encrypt, too weak, or without
// a valid user ID for address — is left out rather than refusing the
// others. A directory may serve keys for other addresses or stale keys;
// it may never make us encrypt to a key whose owner did not bind it to
// this address. A private key anywhere refuses the whole answer.
//
// The error wraps ErrBadKey and says why nothing was usable.
func DiscoveredOpenPGP(data []byte, address, source string, now time.Time) ([]Key, error) {
	addr, err := KeyAddress(address)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	if len(data) > MaxDiscoveredKeyBytes {
		return nil, fmt.Errorf("%w: answer larger than %d KiB", ErrBadKey, MaxDiscoveredKeyBytes>>10)
	}
	entities, err := readEntities(data)
	if err != nil {
		return nil, err
	}
	var keys []Key
	var why []string
	for _, e := range entities {
		entries, err := openPGPEntries(e, now)
		if err != nil {
			why = append(why, "key "+fingerprint(e.PrimaryKey)+" "+err.Error())
			continue
		}
		found := false
		for _, k := range entries {
			if k.Address == addr {
				k.Source = source
				keys = append(keys, k)
				found = true
			}
		}
		if !found {
			why = append(why, "key "+fingerprint(e.PrimaryKey)+" has no valid user ID for "+addr)
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrBadKey, joinReasons(why))
	}
	return keys, nil
}
