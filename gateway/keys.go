package gateway

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/certs/discovery"
	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/gateway/report"
	"github.com/sealgate/sealgate/internal/dnsres"
)

// newKeyring is the key store the node encrypts from: the spool's, and,
// when a discovery source is on, one that looks keys and certificates
// up where correspondents publish them (through the node's resolver,
// roots and private-network guard, like every other outbound fetch).
// With every source off, keys discovered earlier are no longer used.
func newKeyring(cfg *config.Config, store certs.RecordStore, resolver *dnsres.Resolver, roots *x509.CertPool, logger *slog.Logger) (*certs.Keyring, error) {
	keyStore := certs.NewSpoolKeyStore(store)
	d := cfg.Keys.Discovery
	if !d.WKD && !d.OPENPGPKEY && !d.SMIMEA {
		return certs.NewKeyring(keyStore, nil), nil
	}
	smimeRoots, err := certs.SMIMERootPool(cfg.Keys.SMIMERoots)
	if err != nil {
		return nil, err
	}
	source := discovery.New(discovery.Options{
		Resolver: resolver, Roots: roots, SMIMERoots: smimeRoots,
		WKD: d.WKD, OPENPGPKEY: d.OPENPGPKEY, SMIMEA: d.SMIMEA, WKDPort: cfg.Keys.WKDPort,
		AllowedPrivateNetworks: cfg.Outbound.PrivateNetworks(),
		Timeout:                d.Timeout.D(),
		DomainFailureTTL:       d.NegativeTTL.D(),
		Logger:                 logger.With("component", "key-discovery"),
	})
	o := certs.DiscoveryOptions{TTL: d.TTL.D(), NegativeTTL: d.NegativeTTL.D(), MaxEntries: d.MaxEntries, SMIMERoots: smimeRoots}
	if d.SMIMEA {
		o.SMIME = source
	}
	var openPGP certs.OpenPGPDiscoverer // nil when only SMIMEA is on: the store alone serves pgp
	if d.WKD || d.OPENPGPKEY {
		openPGP = source
	}
	return certs.NewDiscoveringKeyring(keyStore, nil, openPGP, o), nil
}

// CheckConfig runs the checks of cfg that need more than the config
// package can do (it cannot parse OpenPGP keys without importing
// certs): the organisation's archive key, the admin listener's
// certificate, the webhooks' secret files. serve runs it before
// anything starts and `config check` with the rest of the validation;
// errors are config.Errors naming file, line and key.
func CheckConfig(cfg *config.Config) error {
	if _, err := loadArchiveKey(cfg, time.Now()); err != nil {
		return err
	}
	if t := cfg.Admin.TLS; t.CertFile != "" {
		if _, err := certs.NewCertReloader(t.CertFile, t.KeyFile); err != nil {
			return cfg.FieldError("admin.tls.cert_file", err)
		}
	}
	_, err := report.LoadEndpoints(cfg) // the webhooks' secrets
	return err
}

// loadArchiveKey reads and checks keys.archive_key_file; nil when none
// is configured.
func loadArchiveKey(cfg *config.Config, now time.Time) (*certs.OpenPGPRecipient, error) {
	file := cfg.Keys.ArchiveKeyFile
	if file == "" {
		return nil, nil
	}
	data, err := os.ReadFile(file)
	if pe := (*os.PathError)(nil); errors.As(err, &pe) {
		err = pe.Err
	}
	if err != nil {
		return nil, cfg.FieldError("keys.archive_key_file", fmt.Errorf("cannot read %s: %w", file, err))
	}
	key, err := certs.ParseArchiveKey(data, now)
	if err != nil {
		return nil, cfg.FieldError("keys.archive_key_file", fmt.Errorf("%s: %w", file, err))
	}
	return key, nil
}
