package config

import (
	"fmt"
	"strings"
)

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
	// ArchiveKeyFile is the organisation's archive key: one OpenPGP
	// public key (armored or binary) that every PGP/MIME message is also
	// encrypted to. Empty: none. Read and checked at start as an import
	// is (gateway.CheckConfig).
	ArchiveKeyFile string `yaml:"archive_key_file"`
	// SMIMERoots are PEM files of the CA certificates S/MIME recipient
	// certificates may chain to: the S/MIME trust store. Only
	// certificates not imported by an admin need it — today those of
	// PKIX-EE SMIMEA records. Empty (the default): no CA is trusted for
	// S/MIME, and such certificates are refused with that reason.
	SMIMERoots []string `yaml:"smime_roots"`
	// WKDPort is the HTTPS port of Web Key Directories (443; tests use
	// another).
	WKDPort int `yaml:"wkd_port"`
	// Discovery looks keys up where correspondents' domains publish them
	// when the key store has none for a recipient.
	Discovery KeyDiscovery `yaml:"discovery"`
}

// KeyDiscovery configures automatic key discovery (certs/discovery).
type KeyDiscovery struct {
	// WKD asks the OpenPGP Web Key Directory of the recipient's domain.
	WKD bool `yaml:"wkd"`
	// OPENPGPKEY asks the DNS for OPENPGPKEY records (RFC 7929); used
	// only with outbound.dnssec_trusted_resolver.
	OPENPGPKEY bool `yaml:"openpgpkey"`
	// SMIMEA asks the DNS for SMIMEA records (RFC 8162) when the smime
	// method finds no certificate; used only with
	// outbound.dnssec_trusted_resolver.
	SMIMEA bool `yaml:"smimea"`
	// TTL is how long a discovered key is used before it is looked up
	// again (a DNS record's shorter TTL wins).
	TTL Duration `yaml:"ttl"`
	// NegativeTTL is how long a lookup that found nothing is remembered.
	NegativeTTL Duration `yaml:"negative_ttl"`
	// Timeout bounds one source's lookup for one recipient.
	Timeout Duration `yaml:"timeout"`
	// MaxEntries bounds the discovered keys kept, and the failed lookups
	// remembered, each.
	MaxEntries int `yaml:"max_entries"`
}

func (v *validator) validateKeys(k *Keys) {
	v.port("keys.wkd_port", k.WKDPort)
	if k.ArchiveKeyFile != "" {
		v.readable("keys.archive_key_file", k.ArchiveKeyFile)
	}
	for i, f := range k.SMIMERoots {
		v.pemCerts(fmt.Sprintf("keys.smime_roots[%d]", i), f)
	}
	d := &k.Discovery
	v.positive("keys.discovery.ttl", int64(d.TTL))
	v.positive("keys.discovery.negative_ttl", int64(d.NegativeTTL))
	v.positive("keys.discovery.timeout", int64(d.Timeout))
	v.positive("keys.discovery.max_entries", int64(d.MaxEntries))
	if d.TTL > 0 && d.NegativeTTL > d.TTL {
		v.fail("keys.discovery.negative_ttl", "longer than keys.discovery.ttl: a missing key would be remembered longer than a found one")
	}
	switch {
	case strings.TrimSpace(k.EncryptedSubject) == "":
		v.fail("keys.encrypted_subject", "must not be empty: it is the Subject every encrypted message shows outside")
	case strings.ContainsFunc(k.EncryptedSubject, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		v.fail("keys.encrypted_subject", "must be one line without control characters")
	case len(k.EncryptedSubject) > 200:
		v.fail("keys.encrypted_subject", "longer than 200 bytes")
	}
}
