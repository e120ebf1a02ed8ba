package gateway

import (
	"context"
	"time"

	"github.com/sealgate/sealgate/gateway/probe"
	"github.com/sealgate/sealgate/internal/mailtext"
	"github.com/sealgate/sealgate/policy"
)

// domainCheck is GET /api/v1/domains/{domain}/check: the probe and what
// delivery would do with the domain's mail now, under the node's TLS
// policy, the domain's TLS history and the MTA-STS policy found.
type domainCheck struct {
	probe.ProbeResult
	probe.Verdict
}

func (g *Gateway) checkDomain(ctx context.Context, domain string) (any, error) {
	d, err := mailtext.CanonicalDomain(domain)
	if err != nil {
		return nil, err
	}
	p, err := probe.New(g.cfg)
	if err != nil {
		return nil, err
	}
	res := p.Probe(ctx, d)
	transport, err := policy.NewTransportPolicy(g.cfg.Outbound.TLSPolicy)
	if err != nil {
		return nil, err
	}
	var history *policy.TLSHistory
	if info, err := g.store.DomainInfo(res.Domain); err == nil && info != nil && info.TLSSeen {
		history = &policy.TLSHistory{TLSSeen: true, Verified: info.Verified, Since: info.FirstSeen.UTC().Format(time.DateOnly)}
	}
	var sts *policy.MTASTSPolicy
	if res.MTASTSMode != "" {
		sts = &policy.MTASTSPolicy{Mode: policy.MTASTSMode(res.MTASTSMode)}
	}
	return domainCheck{ProbeResult: res, Verdict: probe.Judge(res, transport.Requirement(res.Domain, false, history, sts))}, nil
}
