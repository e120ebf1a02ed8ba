package policy

import (
	"fmt"
	"strings"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/internal/mailtext"
)

// TransportPolicy turns outbound.tls_policy into a per-delivery TLS
// requirement through DecideTLS.
type TransportPolicy struct {
	def     tlsSetting
	domains map[string]tlsSetting
}

// tlsSetting is one tls_policy value: a level, and whether DANE is
// required ("dane-only"). "dane" is "may": DANE applies wherever it is
// available, at every level.
type tlsSetting struct {
	level    TLSLevel
	daneOnly bool
}

func parseTLSSetting(name string) (tlsSetting, error) {
	switch name {
	case "dane":
		return tlsSetting{level: TLSMay}, nil
	case "dane-only":
		return tlsSetting{level: TLSEncrypt, daneOnly: true}, nil
	}
	l, err := ParseTLSLevel(name)
	return tlsSetting{level: l}, err
}

func NewTransportPolicy(c config.TLSPolicy) (*TransportPolicy, error) {
	def, err := parseTLSSetting(c.Default)
	if err != nil {
		return nil, fmt.Errorf("outbound.tls_policy.default: %w", err)
	}
	p := &TransportPolicy{def: def, domains: map[string]tlsSetting{}}
	for d, name := range c.Domains {
		l, err := parseTLSSetting(name)
		if err != nil {
			return nil, fmt.Errorf("outbound.tls_policy.domains.%s: %w", d, err)
		}
		key := strings.ToLower(d)
		if c, err := mailtext.CanonicalDomain(d); err == nil {
			key = c
		}
		p.domains[key] = l
	}
	return p, nil
}

// Requirement decides the TLS level for one destination domain ("" via
// a smarthost) and message, given what the domain's TLS history and its
// MTA-STS policy say (nil: none known). A nil TransportPolicy means
// opportunistic TLS by default.
func (p *TransportPolicy) Requirement(domain string, requireTLS bool, history *TLSHistory, sts *MTASTSPolicy) TLSRequirement {
	if p == nil {
		p = &TransportPolicy{}
	}
	in := TLSInputs{Domain: domain, Configured: p.def.level, DANEOnly: p.def.daneOnly,
		ConfiguredBy: "default", RequireTLS: requireTLS, MTASTS: sts, History: history}
	if l, ok := p.domains[strings.ToLower(domain)]; ok {
		in.Configured, in.DANEOnly, in.ConfiguredBy = l.level, l.daneOnly, domain
	}
	return DecideTLS(in)
}
