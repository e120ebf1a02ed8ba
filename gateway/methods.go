package gateway

import (
	"github.com/sealgate/sealgate/gateway/scheduler"
	"github.com/sealgate/sealgate/gateway/seal"
	"github.com/sealgate/sealgate/policy"
)

// methods are the chain-method handlers this node provides: the ones
// that need nothing but the transport, and those that transform the
// message when they are configured (keys.pgp, keys.smime; escrow with a
// portal). A method without a handler is skipped to the next of the
// chain, or at its end holds its recipients as "not provided".
func (g *Gateway) methods() scheduler.Methods {
	m := scheduler.Builtin()
	if g.cfg.Keys.PGP {
		m[string(policy.MethodPGP)] = seal.NewPGP(seal.PGPOptions{Keys: g.keys, Archive: g.archive, Subject: g.cfg.Keys.EncryptedSubject,
			Logger: g.logger.With("component", "seal")})
	}
	if g.cfg.Keys.SMIME {
		m[string(policy.MethodSMIME)] = seal.NewSMIME(seal.SMIMEOptions{Certificates: g.keys, Subject: g.cfg.Keys.EncryptedSubject,
			Logger: g.logger.With("component", "seal")})
	}
	if g.escrow != nil {
		e := g.cfg.Escrow
		var receipt *seal.Receipt
		if e.SenderReceipt {
			receipt = &seal.Receipt{Links: g.escrow, Spool: g.store, Wake: g.wake, MailFrom: g.cfg.PortalMailFrom()}
		}
		m[string(policy.MethodEscrow)] = seal.NewEscrow(seal.EscrowOptions{Store: g.escrow, PublicURL: g.cfg.Portal.PublicURL,
			Hostname: g.cfg.ServerHostname(), Organization: e.Organization, LogoURL: e.LogoURL, AccentColor: e.AccentColor,
			Subject: e.NoticeSubject, SubjectInNotice: e.SubjectInNotice, Receipt: receipt, Logger: g.logger.With("component", "escrow")})
	}
	return m
}

// wake tells the scheduler a message is due now (report mail, admin
// actions).
func (g *Gateway) wake(id string) { g.sched.Wake(id) }
