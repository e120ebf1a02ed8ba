package config

import "strings"

// Keys configures content encryption to correspondents' keys (the key
// store itself lives in the spool; `sealgate keys` manages it).
type Keys struct {
	// PGP provides the pgp chain method: PGP/MIME (RFC 3156) to the
	// recipients' OpenPGP keys. Off, a chain that reaches pgp holds the
	// recipient as "not provided".
	PGP bool `yaml:"pgp"`
	// SMIME provides the smime chain method: S/MIME (RFC 8551)
	// enveloped data to the recipients' certificates. Off, a chain that
	// reaches smime holds the recipient as "not provided".
	SMIME bool `yaml:"smime"`
	// EncryptedSubject replaces the Subject outside an encrypted
	// message; the real one travels inside (protected headers).
	EncryptedSubject string `yaml:"encrypted_subject"`
}

func (v *validator) validateKeys(k *Keys) {
	switch {
	case strings.TrimSpace(k.EncryptedSubject) == "":
		v.fail("keys.encrypted_subject", "must not be empty: it is the Subject every encrypted message shows outside")
	case strings.ContainsFunc(k.EncryptedSubject, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		v.fail("keys.encrypted_subject", "must be one line without control characters")
	case len(k.EncryptedSubject) > 200:
		v.fail("keys.encrypted_subject", "longer than 200 bytes")
	}
}
