package gateway

import (
	"github.com/sealgate/sealgate/gateway/scheduler"
	"github.com/sealgate/sealgate/gateway/seal"
	"github.com/sealgate/sealgate/policy"
)

// methods are the chain-method handlers this node provides: the ones
// that need nothing but the transport, and those that transform the
// message when they are configured (keys.pgp, keys.smime). A method
// without a handler (escrow for now, or one switched off) holds its
// recipients as "not provided".
func (g *Gateway) methods() scheduler.Methods {
	m := scheduler.Builtin()
	if g.cfg.Keys.PGP {
		m[string(policy.MethodPGP)] = seal.NewPGP(seal.PGPOptions{Keys: g.keys, Subject: g.cfg.Keys.EncryptedSubject,
			Logger: g.logger.With("component", "seal")})
	}
	if g.cfg.Keys.SMIME {
		m[string(policy.MethodSMIME)] = seal.NewSMIME(seal.SMIMEOptions{Certificates: g.keys, Subject: g.cfg.Keys.EncryptedSubject,
			Logger: g.logger.With("component", "seal")})
	}
	return m
}

// wake tells the scheduler a message is due now (report mail, admin
// actions).
func (g *Gateway) wake(id string) { g.sched.Wake(id) }
