package gateway

import (
	"net/netip"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/policy"
)

// ExplainInput is what "sealgate policy explain" knows of a message's
// session: the envelope and who sent it.
type ExplainInput struct {
	From       string
	Recipients []string
	AuthUser   string
	ClientIP   netip.Addr
}

// ExplainPolicy decides msg under cfg's policy exactly as a live session
// would (same function, same trust rules) and returns the decision with
// the message as it would be spooled.
func ExplainPolicy(cfg *config.Config, in ExplainInput, msg []byte) (PolicyResult, []byte, error) {
	engine, err := policy.Compile(cfg.Policy)
	if err != nil {
		return PolicyResult{}, nil, err
	}
	trusted := in.AuthUser != "" || policy.MayRelay(in.ClientIP, "", cfg.Inbound.Networks()).Allowed
	res, out := applyPolicy(engine, policyInput{From: in.From, Recipients: in.Recipients, AuthUser: in.AuthUser,
		ClientIP: in.ClientIP, Trusted: trusted}, normalizeLineEndings(msg))
	return res, out, nil
}
