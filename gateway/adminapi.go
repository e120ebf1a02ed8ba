package gateway

import (
	"context"
	"net/http"
	"time"

	"github.com/sealgate/sealgate/gateway/admin"
	"github.com/sealgate/sealgate/gateway/submit"
)

// startAdmin serves the admin listener: the admin and send API, and on a
// fleet's node the loop that shares the send API's counts.
func (g *Gateway) startAdmin(ctx context.Context) {
	// Ready once serving and once the scheduler has loaded the queue:
	// a node that accepts mail it will not deliver is not ready.
	ready := func() bool { return g.ready.Load() && g.sched.Loaded() }
	var escrow admin.EscrowStore // not a typed nil: off is nil
	if g.escrow != nil {
		escrow = g.escrow
	}
	requeue := &admin.Requeuer{Store: g.store, Engine: g.policy.Load, Report: g.report, Wake: g.sched.Wake, OnBounced: g.metrics.AdminBounced}
	g.intake = submit.New(submit.Options{Spool: g.store, Policy: g.policy.Load, Hostname: g.cfg.ServerHostname(),
		MaxMessageBytes: g.cfg.Inbound.MaxMessageBytes, MaxRecipients: g.cfg.Inbound.MaxRecipients,
		OnQueued: g.sched.Wake, OnAccepted: g.metrics.Accepted})
	api := admin.New(admin.Options{Store: g.store, Keys: g.keys, Escrow: escrow, Requeue: requeue, Audit: g.audit, Metrics: g.metrics.Handler(), APIKeys: g.store,
		Submit: g.intake, SendLimits: admin.SendLimits{PerMinute: g.cfg.API.MessagesPerMinute, MaxBytes: 2*g.cfg.Inbound.MaxMessageBytes + 1<<20},
		Hostname: g.cfg.ServerHostname(), Users: g.inbound.Users, TokenLifetime: g.cfg.API.TokenLifetime.D(), Tokens: sharedAs[admin.TokenStore](g), Nonces: sharedAs[admin.NonceStore](g), Rates: sharedAs[admin.RateStore](g), Node: g.rateNode(), SharedStore: g.sharedStoreState(), Engine: g.policy.Load, CheckDomain: g.checkDomain, Wake: g.sched.Wake, Ready: ready,
		ReloadPolicy: g.reloadPolicyFromFile, Logger: g.logger.With("component", "admin"),
		Token: g.adminToken, Hosts: append(admin.AllowedHosts(g.adminLn.Addr().String()), g.cfg.Admin.Hosts...)})
	g.admin = &http.Server{
		Handler:           api.Handler(g.cfg.Admin.Pprof),
		ReadHeaderTimeout: 10 * time.Second,
	}
	g.goServe("admin", func() error { return g.admin.Serve(g.adminLn) })
	if g.shared != nil {
		g.goServe("send counts", func() error {
			failing := false
			every(ctx, time.Second, func(context.Context) {
				err := api.SyncRates(time.Now())
				switch {
				case err != nil && !failing:
					g.logger.Warn("the send API's counts cannot be shared with the fleet; after a minute this node counts alone", "err", err)
				case err == nil && failing:
					g.logger.Info("the send API's counts are shared with the fleet again")
				}
				failing = err != nil
			})
			return nil
		})
	}
}
