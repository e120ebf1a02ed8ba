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
	def     tlsSetting
	domains map[string]tlsSetting
}

// tlsSetting is one tls_policy value: a level, and whether DANE is
// required ("dane-only"). "dane" is "may": DANE applies wherever it is
// available, at every level.
type tlsSetting struct {
	level    policy.TLSLevel
	daneOnly bool
}

func parseTLSSetting(name string) (tlsSetting, error) {
	switch name {
	case "dane":
		return tlsSetting{level: policy.TLSMay}, nil
	case "dane-only":
		return tlsSetting{level: policy.TLSEncrypt, daneOnly: true}, nil
	}
	l, err := policy.ParseTLSLevel(name)
	return tlsSetting{level: l}, err
}

func newTransportPolicy(c config.TLSPolicy) (*transportPolicy, error) {
	def, err := parseTLSSetting(c.Default)
	if err != nil {
		return nil, fmt.Errorf("outbound.tls_policy.default: %w", err)
	}
	p := &transportPolicy{def: def, domains: map[string]tlsSetting{}}
	for d, name := range c.Domains {
		l, err := parseTLSSetting(name)
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
	in := policy.TLSInputs{Domain: domain, Configured: p.def.level, DANEOnly: p.def.daneOnly,
		ConfiguredBy: "default", RequireTLS: requireTLS, MTASTS: sts}
	if history != nil {
		in.History = &policy.TLSHistory{TLSSeen: history.TLSSeen, Verified: history.Verified,
			Since: history.FirstSeen.UTC().Format(time.DateOnly)}
	}
	if l, ok := p.domains[strings.ToLower(domain)]; ok {
		in.Configured, in.DANEOnly, in.ConfiguredBy = l.level, l.daneOnly, domain
	}
	return policy.DecideTLS(in)
}
