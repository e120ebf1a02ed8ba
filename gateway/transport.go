package gateway

import (
	"fmt"
	"strings"
	"time"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/policy"
	"github.com/sealgate/sealgate/queue"
)

// transportPolicy turns outbound.tls_policy into a per-delivery TLS
// requirement through policy.DecideTLS.
type transportPolicy struct {
	def     policy.TLSLevel
	domains map[string]policy.TLSLevel
}

func newTransportPolicy(c config.TLSPolicy) (*transportPolicy, error) {
	def, err := policy.ParseTLSLevel(c.Default)
	if err != nil {
		return nil, fmt.Errorf("outbound.tls_policy.default: %w", err)
	}
	p := &transportPolicy{def: def, domains: map[string]policy.TLSLevel{}}
	for d, name := range c.Domains {
		l, err := policy.ParseTLSLevel(name)
		if err != nil {
			return nil, fmt.Errorf("outbound.tls_policy.domains.%s: %w", d, err)
		}
		p.domains[strings.ToLower(d)] = l
	}
	return p, nil
}

// requirement decides the TLS level for one destination domain ("" via a
// smarthost) and message.
func (p *transportPolicy) requirement(domain string, requireTLS bool, history *queue.DomainInfo, sts *policy.MTASTSPolicy) policy.TLSRequirement {
	in := policy.TLSInputs{Domain: domain, Configured: p.def, ConfiguredBy: "default", RequireTLS: requireTLS, MTASTS: sts}
	if history != nil {
		in.History = &policy.TLSHistory{TLSSeen: history.TLSSeen, Verified: history.Verified,
			Since: history.FirstSeen.UTC().Format(time.DateOnly)}
	}
	if l, ok := p.domains[strings.ToLower(domain)]; ok {
		in.Configured, in.ConfiguredBy = l, domain
	}
	return policy.DecideTLS(in)
}
