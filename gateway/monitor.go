package gateway

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/sealgate/sealgate/queue"
)

// tlsMonitor re-probes every known destination domain on an interval and
// records what it finds, so the TLS history reflects the domain's present
// and an admin learns of a domain that has really stopped offering TLS.
type tlsMonitor struct {
	store       *queue.Store
	prober      *Prober
	interval    time.Duration
	reportAfter time.Duration
	concurrency int
	// sts, when set, refreshes each domain's cached MTA-STS policy on the
	// same round, so a policy is renewed before it expires even for a
	// domain that gets no mail for a while.
	sts    *mtastsResolver
	logger *slog.Logger
	now    func() time.Time
}

// round probes every known domain once, with bounded concurrency.
func (m *tlsMonitor) round(ctx context.Context) {
	domains, err := m.store.Domains()
	if err != nil {
		m.logger.Error("TLS monitor: cannot list domains", "err", err)
		return
	}
	sem := make(chan struct{}, max(m.concurrency, 1))
	var wg sync.WaitGroup
	for _, d := range domains {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			m.probe(ctx, d.Domain)
		}()
	}
	wg.Wait()
}

func (m *tlsMonitor) probe(ctx context.Context, domain string) {
	if m.sts != nil {
		m.sts.policyFor(ctx, domain)
	}
	res := m.prober.Probe(ctx, domain)
	if err := m.store.ObserveTLS(res.Observation()); err != nil {
		m.logger.Error("TLS monitor: cannot record probe", "domain", domain, "err", err)
		return
	}
	info, err := m.store.DomainInfo(domain)
	if err != nil || info == nil {
		return
	}
	m.logger.Debug("TLS probe", "domain", domain, "host", res.Host, "tls", res.TLSVersion, "verified", res.Verified, "error", res.Error)
	if since := info.ProbeFailingSince; info.TLSSeen && !since.IsZero() && m.now().Sub(since) >= m.reportAfter {
		m.logger.Warn("destination domain has stopped offering TLS; its mail stays deferred until an admin runs `sealgate domains reset`",
			"domain", domain, "failing_since", since.UTC().Format(time.RFC3339), "last_error", info.LastProbeError)
	}
}
