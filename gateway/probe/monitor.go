package probe

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/sealgate/sealgate/gateway/mtasts"
	"github.com/sealgate/sealgate/queue"
)

// MonitorStore is what the monitor needs from the spool: the known
// destination domains and their TLS history. queue.Store implements it.
type MonitorStore interface {
	Domains() ([]queue.DomainInfo, error)
	DomainInfo(domain string) (*queue.DomainInfo, error)
	ObserveTLS(obs queue.TLSObservation) error
}

// MonitorOptions configure a Monitor (outbound.tls_monitor).
type MonitorOptions struct {
	Store  MonitorStore
	Prober *Prober
	// Interval between rounds; ReportAfter: how long a domain that has
	// shown TLS may fail its probes before the log says so.
	Interval, ReportAfter time.Duration
	Concurrency           int // probes at once (at least 1)
	// STS, when set, refreshes each domain's cached MTA-STS policy on
	// the same round, so a policy is renewed before it expires even for
	// a domain that gets no mail for a while.
	STS    *mtasts.Resolver
	Logger *slog.Logger
}

// Monitor re-probes every known destination domain on an interval and
// records what it finds, so the TLS history reflects the domain's present
// and an admin learns of a domain that has really stopped offering TLS.
type Monitor struct {
	store       MonitorStore
	prober      *Prober
	interval    time.Duration
	reportAfter time.Duration
	concurrency int
	sts         *mtasts.Resolver
	logger      *slog.Logger
	now         func() time.Time
}

// NewMonitor returns a monitor; run Round every Interval().
func NewMonitor(o MonitorOptions) *Monitor {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Monitor{store: o.Store, prober: o.Prober, interval: o.Interval, reportAfter: o.ReportAfter,
		concurrency: max(o.Concurrency, 1), sts: o.STS, logger: o.Logger, now: time.Now}
}

// Interval is the time between rounds.
func (m *Monitor) Interval() time.Duration { return m.interval }

// Round probes every known domain once, with bounded concurrency.
func (m *Monitor) Round(ctx context.Context) {
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

func (m *Monitor) probe(ctx context.Context, domain string) {
	if m.sts != nil {
		m.sts.PolicyFor(ctx, domain)
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
