package gateway

import "github.com/sealgate/sealgate/gateway/scheduler"

// methods are the chain-method handlers this node provides: the ones
// that need nothing but the transport. A method that transforms the
// message (pgp, smime, escrow) is added here when it is configured;
// until then the scheduler holds its recipients as "not provided".
func (g *Gateway) methods() scheduler.Methods {
	return scheduler.Builtin()
}

// wake tells the scheduler a message is due now (report mail, admin
// actions).
func (g *Gateway) wake(id string) { g.sched.Wake(id) }
