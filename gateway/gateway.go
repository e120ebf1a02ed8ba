package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/sealgate/sealgate/pgstore"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/gateway/admin"
	"github.com/sealgate/sealgate/gateway/audit"
	"github.com/sealgate/sealgate/gateway/delivery"
	"github.com/sealgate/sealgate/gateway/metrics"
	"github.com/sealgate/sealgate/gateway/mtasts"
	"github.com/sealgate/sealgate/gateway/probe"
	"github.com/sealgate/sealgate/gateway/report"
	"github.com/sealgate/sealgate/gateway/scheduler"
	"github.com/sealgate/sealgate/gateway/smtpin"
	"github.com/sealgate/sealgate/gateway/submit"
	"github.com/sealgate/sealgate/internal/dnsres"
	"github.com/sealgate/sealgate/internal/netguard"
	"github.com/sealgate/sealgate/policy"
	"github.com/sealgate/sealgate/queue"
)

// Gateway is one running sealgate node: the inbound listeners, the spool,
// the delivery scheduler and the admin API, wired from one Config.
//
// The order of life is New (opens the spool, loads certificates; nothing
// listens yet), Start (binds every listener, so address errors surface
// before anything runs, then serves), and Shutdown (stops accepting,
// lets SMTP transactions in flight finish within the deadline, stops
// delivery, closes the spool).
type Gateway struct {
	cfg    *config.Config
	logger *slog.Logger

	store     *queue.Store
	shared    *pgstore.Store          // store.postgres: what a fleet shares; nil on a single node
	leader    *pgstore.Leader         // the fleet's leader election; nil on a single node
	report    queue.ReportFunc        // builds DSNs: bounces, delay notices
	receipt   queue.ReceiptFunc       // builds security receipts
	audit     *audit.Trail            // signs and prunes the audit log the spool keeps
	metrics   *metrics.Metrics        // served at the admin listener's /metrics
	webhooks  *report.Dispatcher      // nil without webhooks.endpoints
	intake    *submit.Intake          // the send API's; nil without the admin listener
	escrow    *queue.Escrow           // nil unless escrow is on (escrow.enabled and a portal)
	keys      *certs.Keyring          // correspondents' public keys, sealed in the spool
	archive   *certs.OpenPGPRecipient // keys.archive_key_file; nil without one
	certs     *certs.CertReloader
	tlsConfig *tls.Config
	inbound   *smtpin.Server
	deliverer *delivery.Deliverer
	sched     *scheduler.Scheduler
	monitor   *probe.Monitor
	tlsrpt    *report.TLSReporter // nil unless outbound.tlsrpt.enabled
	dkim      *dkimSigning        // its keys are swapped by ReloadKeys
	policy    atomic.Pointer[policy.Engine]
	admin     *http.Server
	portal    *http.Server // nil unless escrow is on
	ready     atomic.Bool

	smtpLn, implicitLn, adminLn, portalLn net.Listener
	adminCert                             *certs.CertReloader // admin.tls; nil: plain HTTP on loopback
	adminToken                            string

	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	done   bool
}

// New builds a gateway from cfg. It creates the data directory, the spool
// key and the self-signed certificate when they do not exist yet.
func New(cfg *config.Config, logger *slog.Logger) (*Gateway, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	hostname := cfg.ServerHostname()

	certFile, keyFile := cfg.Inbound.TLS.CertFile, cfg.Inbound.TLS.KeyFile
	if certFile == "" {
		certFile, keyFile = cfg.SelfSignedCertFiles()
		if err := certs.EnsureSelfSigned(certFile, keyFile, []string{hostname, "localhost"}); err != nil {
			return nil, fmt.Errorf("self-signed certificate: %w", err)
		}
	}
	reloader, err := certs.NewCertReloader(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	logCertificate(logger, reloader, "listener certificate loaded")
	roots, err := certs.RootPool(cfg.Outbound.ExtraRootCAs)
	if err != nil {
		return nil, err
	}
	archive, err := loadArchiveKey(cfg, time.Now())
	if err != nil {
		return nil, err
	}
	resolver, err := dnsres.New(cfg.Outbound.DNSResolver, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("outbound.dns_resolver: %w", err)
	}
	resolver.DNSSECTrusted = cfg.Outbound.DNSSECTrustedResolver
	var smarthost *delivery.Smarthost
	if sh := cfg.Outbound.Smarthost; sh.Address != "" {
		smarthost = &delivery.Smarthost{Addr: sh.Address, Username: sh.Username, TLS: sh.TLS}
		if sh.PasswordFile != "" {
			pw, err := os.ReadFile(sh.PasswordFile)
			if err != nil {
				return nil, fmt.Errorf("outbound.smarthost.password_file: %w", err)
			}
			smarthost.Password = strings.TrimRight(string(pw), "\r\n")
		}
	}
	transport, err := policy.NewTransportPolicy(cfg.Outbound.TLSPolicy)
	if err != nil {
		return nil, err
	}
	var signer *certs.DKIMSigner
	if len(cfg.DKIM.Keys) > 0 {
		if signer, err = certs.NewDKIMSigner(cfg.DKIM.Keys); err != nil {
			return nil, err
		}
		logDKIMKeys(logger, cfg.DKIM.Keys)
	}
	prober, err := probe.New(cfg)
	if err != nil {
		return nil, err
	}

	var adminToken string
	if cfg.Admin.Listen != "" {
		if adminToken, err = admin.LoadOrCreateToken(cfg.AdminTokenFile()); err != nil {
			return nil, err
		}
	}

	endpoints, err := report.LoadEndpoints(cfg)
	if err != nil {
		return nil, err
	}
	hooks := report.NewWebhooks(endpoints)
	var webhooks queue.WebhookFunc
	var webhooksEscrow queue.WebhookEscrowFunc
	if hooks != nil {
		webhooks, webhooksEscrow = hooks.FromChange, hooks.FromEscrow
	}
	store, err := queue.Open(queue.Options{
		Path:           cfg.SpoolDBFile(),
		KeyFile:        cfg.SpoolKeyFile(),
		RetryInitial:   cfg.Queue.RetryInitial.D(),
		RetryMax:       cfg.Queue.RetryMax.D(),
		Expiry:         cfg.Queue.Expiry.D(),
		Retention:      cfg.Queue.Retention.D(),
		DelayWarning:   cfg.Queue.DelayWarning.D(),
		Audit:          audit.FromChange,
		AuditEscrow:    audit.FromEscrow,
		Webhooks:       webhooks,
		WebhooksEscrow: webhooksEscrow,
		Logger:         logger.With("component", "queue"),
	})
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	auditKey, err := audit.LoadOrCreateKey(cfg.AuditSigningKeyFile())
	if err != nil {
		store.Close()
		return nil, err
	}
	shared, err := openShared(cfg, logger)
	if err != nil {
		store.Close()
		return nil, err
	}
	if shared != nil {
		store.UseShared(shared)
	}
	var adminCert *certs.CertReloader
	if t := cfg.Admin.TLS; t.CertFile != "" {
		if adminCert, err = certs.NewCertReloader(t.CertFile, t.KeyFile); err != nil {
			closeStores(store, shared)
			return nil, fmt.Errorf("admin.tls: %w", err)
		}
	}

	g := &Gateway{cfg: cfg, logger: logger, store: store, shared: shared, certs: reloader, adminToken: adminToken, archive: archive,
		adminCert: adminCert, report: report.DSNBuilder{Hostname: hostname}.Build, receipt: report.ReceiptBuilder{Hostname: hostname}.Build, audit: audit.New(store, auditKey, nil), metrics: metrics.New(store)}
	g.audit.SetCheckpointInterval(cfg.Audit.CheckpointInterval.D())
	if len(endpoints) > 0 {
		w := cfg.Webhooks
		g.webhooks = report.NewDispatcher(report.DispatcherOptions{Outbox: store, Endpoints: endpoints, MaxAge: w.MaxAge.D(),
			RetryInitial: w.RetryInitial.D(), RetryMax: w.RetryMax.D(), OnFailure: g.metrics.WebhookFailed,
			Logger: logger.With("component", "webhooks")})
	}
	if cfg.EscrowOn() {
		objects, err := openEscrowObjects(cfg)
		if err != nil {
			closeStores(store, shared)
			return nil, err
		}
		if g.escrow, err = store.OpenEscrow(queue.EscrowOptions{KeyFile: cfg.EscrowKeyFile(), Expiry: cfg.Escrow.Expiry.D(), Objects: objects}); err != nil {
			closeStores(store, shared)
			return nil, err
		}
	}
	if g.keys, err = newKeyring(cfg, store, resolver, roots, logger); err != nil {
		closeStores(store, shared)
		return nil, err
	}
	g.tlsConfig = certs.ServerTLSConfig(reloader)
	g.deliverer = delivery.New(delivery.Options{
		Hostname:          hostname,
		Resolver:          resolver,
		Port:              cfg.Outbound.SMTPPort,
		RootCAs:           roots,
		ConnectTimeout:    cfg.Outbound.ConnectTimeout.D(),
		CommandTimeout:    cfg.Outbound.CommandTimeout.D(),
		IdleConnTimeout:   cfg.Outbound.IdleConnTimeout.D(),
		MaxPerDestination: cfg.Outbound.MaxPerDestination,
		Smarthost:         smarthost,
		Logger:            logger.With("component", "delivery"),
		// Loop and SSRF guard: no MX on an internal address unless allowed,
		// never our own listeners.
		AllowedPrivateNetworks: cfg.Outbound.PrivateNetworks(),
		Self:                   g.listenerAddrs,
	})
	sched := scheduler.Options{
		Store:            store,
		Deliverer:        g.deliverer,
		Logger:           logger.With("component", "scheduler"),
		MaxConcurrency:   cfg.Outbound.MaxConcurrency,
		MaxBytesInFlight: cfg.Outbound.MaxBytesInFlight,
		// Enforced here, where waiting costs no global slot; delivery's
		// own bound of the same size never blocks behind it.
		MaxPerDestination: cfg.Outbound.MaxPerDestination,
		Smarthost:         smarthost != nil,
		Methods:           g.methods(),
		DSN:               g.report,
		TLS:               transport,
		OnAttempt: func(m *queue.Message, att queue.Attempt, outcomes []queue.RcptOutcome) {
			g.metrics.Attempt(m, att, outcomes)
			g.sendReceipt(m)
		},
	}
	g.dkim = &dkimSigning{logger: logger.With("component", "dkim")}
	if signer != nil {
		g.dkim.signer.Store(signer)
	}
	sched.Sign = g.dkim.sign
	var sts *mtasts.Resolver
	if smarthost == nil {
		// A hostile domain's mta-sts host (or TLSRPT endpoint) must not
		// point the gateway at something internal: the same guard as MX.
		allowed := cfg.Outbound.PrivateNetworks()
		https := resolver.GuardedHTTPSClient(roots, mtasts.FetchTimeout, func(ip netip.Addr) error { return netguard.Refuse(ip, allowed) })
		sts = mtasts.New(store, resolver, https, cfg.Outbound.MTASTSPort, logger.With("component", "mta-sts"))
		sched.MTASTS = sts
		if rpt := cfg.Outbound.TLSRPT; rpt.Enabled {
			g.tlsrpt = report.NewTLSReporter(report.TLSReporterOptions{
				Store: store, Resolver: resolver, Client: https, Wake: g.wake,
				Hostname: hostname, Organization: rpt.Organization, Contact: rpt.Contact,
				Logger: logger.With("component", "tlsrpt"),
			})
			sched.TLSReports = g.tlsrpt
		}
	}
	g.sched = scheduler.New(sched)

	mon := cfg.Outbound.TLSMonitor
	g.monitor = probe.NewMonitor(probe.MonitorOptions{Store: store, Prober: prober, Interval: mon.ProbeInterval.D(),
		ReportAfter: mon.ReportAfter.D(), Concurrency: mon.Concurrency, STS: sts, Logger: logger.With("component", "tls-monitor")})

	engine, err := policy.Compile(cfg.Policy)
	if err != nil {
		closeStores(store, shared)
		return nil, err
	}
	g.policy.Store(engine)
	logger.Info("policy loaded", "rules", len(cfg.Policy.Rules), "hash", engine.Hash())

	g.inbound, err = smtpin.New(smtpin.Options{
		Config:      cfg.Inbound,
		Hostname:    hostname,
		TLSConfig:   g.tlsConfig,
		ClientRoots: roots,
		Spool:       store,
		Logger:      logger.With("component", "smtp"),
		OnQueued:    g.sched.Wake,
		OnAccepted:  g.metrics.Accepted,
		SpoolDir:    cfg.DataDir,
		Policy:      g.policy.Load,
	})
	if err != nil {
		closeStores(store, shared)
		return nil, err
	}
	return g, nil
}

// Start binds the listeners and starts serving. It returns once
// everything listens; errors while serving are logged.
func (g *Gateway) Start() error {
	var err error
	if g.smtpLn, err = net.Listen("tcp", g.cfg.Inbound.Listen); err != nil {
		return fmt.Errorf("inbound.listen: %w", err)
	}
	if a := g.cfg.Inbound.ImplicitTLSListen; a != "" {
		if g.implicitLn, err = net.Listen("tcp", a); err != nil {
			g.smtpLn.Close()
			return fmt.Errorf("inbound.implicit_tls_listen: %w", err)
		}
	}
	if a := g.cfg.Admin.Listen; a != "" {
		if g.adminLn, err = net.Listen("tcp", a); err != nil {
			g.smtpLn.Close()
			if g.implicitLn != nil {
				g.implicitLn.Close()
			}
			return fmt.Errorf("admin.listen: %w", err)
		}
		if g.adminCert != nil {
			g.adminLn = tls.NewListener(g.adminLn, certs.ServerTLSConfig(g.adminCert))
		}
	}

	if g.escrow != nil {
		if g.portalLn, err = g.listenPortal(); err != nil {
			for _, l := range []net.Listener{g.smtpLn, g.implicitLn, g.adminLn} {
				if l != nil {
					l.Close()
				}
			}
			return err
		}
	}

	// A tail a crash left unsigned is signed now, before anything else
	// writes, so that a long unsigned tail always means deleted
	// checkpoints (audit verify).
	if _, problem, err := g.audit.SignHead(time.Now(), 0); err != nil {
		g.logger.Error("audit checkpoint", "err", err)
	} else if problem != "" {
		g.logger.Error("audit trail: "+problem+"; put on record in the trail", "component", "audit")
	}
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	g.goServe("scheduler", func() error { return g.sched.Run(ctx) })
	gcInterval := min(max(g.cfg.Queue.Retention.D()/10, time.Second), 10*time.Minute)
	g.goServe("spool gc", func() error { every(ctx, gcInterval, g.gcOnce); return nil })
	if g.webhooks != nil {
		g.goServe("webhooks", func() error { g.webhooks.Run(ctx); return nil })
	}
	g.goServe("audit checkpoints", func() error { every(ctx, g.cfg.Audit.CheckpointInterval.D(), g.auditCheckpoint); return nil })
	g.goServe("audit retention", func() error { every(ctx, auditPruneInterval, g.auditPrune); return nil })
	watch := &certExpiryWatch{certs: g.certs, logger: g.logger, now: time.Now, warned: map[string]int{}}
	watch.check(ctx)
	g.goServe("certificate expiry", func() error { every(ctx, time.Hour, watch.check); return nil })
	g.startFleet(ctx)
	// The TLS probe of every known domain: once per fleet, on its leader.
	g.goServe("tls monitor", func() error {
		every(ctx, g.monitor.Interval(), func(ctx context.Context) {
			if g.leading() {
				g.monitor.Round(ctx)
			}
		})
		return nil
	})
	if r := g.tlsrpt; r != nil {
		// In a fleet every node counts its sessions into the shared
		// aggregates and the leader sends the reports, once.
		g.goServe("tlsrpt", func() error {
			every(ctx, r.CheckEvery(), func(ctx context.Context) {
				if g.leading() {
					r.SendDue(ctx)
				}
			})
			return nil
		})
	}
	g.goServe("smtp", func() error { return g.inbound.Serve(g.smtpLn) })
	if g.implicitLn != nil {
		g.goServe("smtps", func() error { return g.inbound.ServeImplicitTLS(g.implicitLn) })
	}
	if g.adminLn != nil {
		g.startAdmin(ctx)
	}
	if g.portalLn != nil {
		g.startPortal(ctx)
	}
	g.ready.Store(true)
	g.logger.Info("sealgate started",
		"smtp", g.smtpLn.Addr().String(),
		"smtps", addrString(g.implicitLn),
		"admin", addrString(g.adminLn),
		"portal", addrString(g.portalLn),
		"data_dir", g.cfg.DataDir)
	return nil
}

func (g *Gateway) goServe(name string, run func() error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := run(); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			g.logger.Error("component stopped", "component", name, "err", err)
		}
	}()
}

// gcOnce removes finished messages past their retention period, gives
// the file's free space back when it is mostly free (after a backlog
// drained), and sends the delay notices held messages are due (a held
// message makes no delivery attempt that could send them).
func (g *Gateway) gcOnce(ctx context.Context) {
	n, err := g.store.GC()
	if err != nil {
		g.logger.Error("spool gc", "err", err)
	} else if n > 0 {
		g.logger.Debug("spool gc", "removed", n)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	res, err := g.store.Compact(cctx, false)
	cancel()
	switch {
	case err != nil:
		g.logger.Error("spool compaction", "err", err)
	case res.Skipped == "":
		g.logger.Info("spool compacted: free space given back", "bytes_before", res.Before, "bytes_after", res.After,
			"paused", res.Paused.Round(time.Millisecond).String())
	}
	g.sendPendingReceipts(ctx)
	ids, err := g.store.NotifyHeldDelays(g.report)
	if err != nil {
		g.logger.Error("delay notices of held messages", "err", err)
	}
	for _, id := range ids {
		g.logger.Info("delay notice queued for a held message", "dsn_id", id)
		g.wake(id)
	}
}

// every runs fn each interval until ctx ends: the one shape of all the
// gateway's periodic jobs (spool GC, TLS monitor, TLS reports).
func every(ctx context.Context, interval time.Duration, fn func(context.Context)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn(ctx)
		}
	}
}

// reloadPolicyFromFile re-reads the config file the gateway started
// with and reloads its policy (the admin API's reload).
func (g *Gateway) reloadPolicyFromFile() error {
	if g.cfg.Source == "" {
		return errors.New("running on the embedded defaults: there is no config file to reload")
	}
	cfg, err := config.Load(g.cfg.Source)
	if err != nil {
		g.logger.Error("policy reload refused; the running rules stay", "err", err)
		return err
	}
	return g.ReloadPolicy(cfg)
}

// SMTPAddr is the address of the STARTTLS listener (after Start).
func (g *Gateway) SMTPAddr() string { return addrString(g.smtpLn) }

// ImplicitTLSAddr is the address of the implicit-TLS listener, "" if off.
func (g *Gateway) ImplicitTLSAddr() string { return addrString(g.implicitLn) }

// AdminAddr is the address of the admin listener, "" if off.
func (g *Gateway) AdminAddr() string { return addrString(g.adminLn) }

// Config is the configuration the gateway runs on.
func (g *Gateway) Config() *config.Config { return g.cfg }

// Store gives tests and the CLI's in-process commands the spool.
func (g *Gateway) Store() *queue.Store { return g.store }

// listenerAddrs are the addresses of the inbound SMTP listeners (after
// Start): delivery never sends there.
func (g *Gateway) listenerAddrs() []net.Addr {
	var out []net.Addr
	for _, l := range []net.Listener{g.smtpLn, g.implicitLn} {
		if l != nil {
			out = append(out, l.Addr())
		}
	}
	return out
}

func addrString(l net.Listener) string {
	if l == nil {
		return ""
	}
	return l.Addr().String()
}

// Shutdown stops accepting mail, waits for SMTP transactions in flight
// until ctx ends, stops delivery (attempts in flight are abandoned and
// retried after restart: the spool still has them) and closes the spool.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.mu.Lock()
	if g.done {
		g.mu.Unlock()
		return nil
	}
	g.done = true
	g.mu.Unlock()

	g.ready.Store(false)
	g.logger.Info("shutting down")
	var errs []error
	if err := g.inbound.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("smtp: %w", err))
	}
	if g.cancel != nil {
		g.cancel()
	}
	if g.admin != nil {
		if err := g.admin.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("admin: %w", err))
		}
	}
	if g.portal != nil {
		if err := g.portal.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("portal: %w", err))
		}
	}
	stopped := make(chan struct{})
	go func() { g.wg.Wait(); close(stopped) }()
	select {
	case <-stopped:
	case <-ctx.Done():
		// Attempts in flight are abandoned (they are retried after the
		// restart); the spool is closed below either way.
		errs = append(errs, errors.New("components still running at the shutdown deadline"))
	}
	g.deliverer.Close()
	g.auditCheckpoint(context.Background()) // the last changes are signed too (and shipped, in a fleet)
	if g.shared != nil {
		g.shared.Close()
	}
	if err := g.store.Close(); err != nil {
		errs = append(errs, fmt.Errorf("spool: %w", err))
	}
	g.logger.Info("stopped")
	return errors.Join(errs...)
}

// Keys is the key store of correspondents' public keys.
func (g *Gateway) Keys() *certs.Keyring { return g.keys }
