package policy

import (
	"net/netip"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/internal/mailtext"
)

// ExplainInput is what "sealgate policy explain" knows of a message's
// session: the envelope and who sent it.
type ExplainInput struct {
	From       string
	Recipients []string
	AuthUser   string
	ClientIP   netip.Addr
}

// Explain decides msg under cfg's policy exactly as a live session
// would (same function, same trust rules) and returns the decision with
// the message as it would be spooled.
func Explain(cfg *config.Config, in ExplainInput, msg []byte) (Applied, []byte, error) {
	engine, err := Compile(cfg.Policy)
	if err != nil {
		return Applied{}, nil, err
	}
	trusted := in.AuthUser != "" || MayRelay(in.ClientIP, "", cfg.Inbound.Networks()).Allowed
	res, out := Apply(engine, Session{From: in.From, Recipients: in.Recipients, AuthUser: in.AuthUser,
		ClientIP: in.ClientIP, Trusted: trusted}, mailtext.NormalizeLineEndings(msg))
	return res, out, nil
}
