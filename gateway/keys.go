package gateway

import (
	"crypto/x509"
	"log/slog"

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/certs/discovery"
	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/internal/dnsres"
	"github.com/sealgate/sealgate/queue"
)

// newKeyring is the key store the node encrypts from: the spool's, and,
// when a discovery source is on, one that looks keys up where
// correspondents publish them (through the node's resolver, roots and
// private-network guard, like every other outbound fetch). With every
// source off, keys discovered earlier are no longer used.
func newKeyring(cfg *config.Config, store *queue.Store, resolver *dnsres.Resolver, roots *x509.CertPool, logger *slog.Logger) *certs.Keyring {
	keyStore := certs.NewSpoolKeyStore(store)
	d := cfg.Keys.Discovery
	if !d.WKD && !d.OPENPGPKEY {
		return certs.NewKeyring(keyStore, nil)
	}
	source := discovery.New(discovery.Options{
		Resolver: resolver, Roots: roots,
		WKD: d.WKD, OPENPGPKEY: d.OPENPGPKEY, WKDPort: cfg.Keys.WKDPort,
		AllowedPrivateNetworks: cfg.Outbound.PrivateNetworks(),
		Timeout:                d.Timeout.D(),
		DomainFailureTTL:       d.NegativeTTL.D(),
		Logger:                 logger.With("component", "key-discovery"),
	})
	return certs.NewDiscoveringKeyring(keyStore, nil, source, certs.DiscoveryOptions{
		TTL: d.TTL.D(), NegativeTTL: d.NegativeTTL.D(), MaxEntries: d.MaxEntries,
	})
}
