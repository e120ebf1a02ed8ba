package gateway

import (
	"fmt"
	"time"

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/policy"
)

// Reload re-reads the listener certificate and applies what can change
// safely while running. It keeps the old certificate when the new one
// does not load.
func (g *Gateway) Reload() error {
	if err := g.certs.Reload(); err != nil {
		return fmt.Errorf("certificate reload: %w", err)
	}
	logCertificate(g.logger, g.certs, "listener certificate reloaded")
	if g.adminCert != nil {
		if err := g.adminCert.Reload(); err != nil {
			return fmt.Errorf("admin.tls certificate reload: %w", err)
		}
		logCertificate(g.logger, g.adminCert, "admin listener certificate reloaded")
	}
	return nil
}

// ReloadKeys swaps in the DKIM keys and the outbound TLS policy of cfg:
// the next message is signed with the new keys (publish a new selector,
// add it, reload, remove the old one later) and delivered under the new
// TLS levels. A key or a level that does not load is refused and the
// running ones stay.
func (g *Gateway) ReloadKeys(cfg *config.Config) error {
	var signer *certs.DKIMSigner
	if len(cfg.DKIM.Keys) > 0 {
		var err error
		if signer, err = certs.NewDKIMSigner(cfg.DKIM.Keys); err != nil {
			g.logger.Error("DKIM key reload refused; the running keys stay", "err", err)
			return err
		}
	}
	transport, err := policy.NewTransportPolicy(cfg.Outbound.TLSPolicy)
	if err != nil {
		g.logger.Error("TLS policy reload refused; the running one stays", "err", err)
		return err
	}
	g.dkim.signer.Store(signer)
	g.sched.SetTransportPolicy(transport)
	logDKIMKeys(g.logger, cfg.DKIM.Keys)
	g.logger.Info("DKIM keys and TLS policy reloaded", "dkim_keys", len(cfg.DKIM.Keys), "tls_policy_domains", len(cfg.Outbound.TLSPolicy.Domains))
	return nil
}

// ReloadPolicy swaps in the rules of cfg atomically: messages already in
// a session finish under the rules they started with. An invalid rule set
// is refused and the running one stays. The log names the rule set's hash.
func (g *Gateway) ReloadPolicy(cfg *config.Config) error {
	engine, err := policy.Compile(cfg.Policy)
	if err != nil {
		g.logger.Error("policy reload refused; the running rules stay", "err", err, "hash", g.policy.Load().Hash())
		return err
	}
	old := g.policy.Swap(engine)
	g.logger.Info("policy reloaded", "rules", len(cfg.Policy.Rules), "hash", engine.Hash(), "previous_hash", old.Hash())
	return nil
}

// ReloadInbound puts cfg's inbound limits, timeouts, trusted networks,
// tenants and users in force for the connections that come next (the
// open ones finish under the settings they started with), and logs each
// inbound setting that only a restart changes.
func (g *Gateway) ReloadInbound(cfg *config.Config) {
	for _, what := range g.inbound.Reconfigure(cfg.Inbound) {
		g.logger.Warn("config change needs a restart; the running value stays", "setting", what)
	}
	if g.intake != nil {
		g.intake.SetLimits(cfg.Inbound.MaxMessageBytes, cfg.Inbound.MaxRecipients)
	}
	for _, w := range ConfigWarnings(cfg, time.Now()) {
		g.logger.Warn("config warning", "warning", w)
	}
	g.logger.Info("inbound settings reloaded", "trusted_networks", len(cfg.Inbound.TrustedNetworks),
		"tenants", len(cfg.Inbound.Tenants), "users", len(cfg.Inbound.Auth.Users))
}
