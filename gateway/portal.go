package gateway

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/gateway/portal"
	"github.com/sealgate/sealgate/internal/objectstore"
	"github.com/sealgate/sealgate/policy"
	"github.com/sealgate/sealgate/queue"
)

// listenPortal binds the portal's HTTPS listener (portal.listen) with
// its certificate: portal.tls, else the gateway's own.
func (g *Gateway) listenPortal() (net.Listener, error) {
	tlsConfig := g.tlsConfig
	if c := g.cfg.Portal.TLS; c.CertFile != "" {
		reloader, err := certs.NewCertReloader(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("portal.tls: %w", err)
		}
		tlsConfig = certs.ServerTLSConfig(reloader)
	}
	tlsConfig = tlsConfig.Clone()
	tlsConfig.NextProtos = []string{"h2", "http/1.1"}
	tlsConfig.MinVersion = max(tlsConfig.MinVersion, tls.VersionTLS12)
	ln, err := net.Listen("tcp", g.cfg.Portal.Listen)
	if err != nil {
		return nil, fmt.Errorf("portal.listen: %w", err)
	}
	return tls.NewListener(ln, tlsConfig), nil
}

// startPortal serves the portal and sweeps expired escrowed messages.
func (g *Gateway) startPortal(ctx context.Context) {
	e, p := g.cfg.Escrow, g.cfg.Portal
	handler := portal.New(portal.Options{Store: g.escrow, Senders: g.escrow, Spool: g.store, Wake: g.sched.Wake,
		PublicURL: p.PublicURL, MailFrom: g.cfg.PortalMailFrom(), Hostname: g.cfg.ServerHostname(),
		Organization: e.Organization, LogoURL: e.LogoURL, AccentColor: e.AccentColor,
		SessionLifetime: p.SessionLifetime.D(), SessionKey: g.escrow.SessionKey(), ReplyPolicy: g.replyPolicy, OnOpened: g.metrics.EscrowOpened, Logger: g.logger.With("component", "portal")}).Handler()
	g.portal = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 2 * time.Minute,
		WriteTimeout: 5 * time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
	}
	g.goServe("portal", func() error { return g.portal.Serve(g.portalLn) })
	g.goServe("escrow expiry", func() error {
		every(ctx, time.Minute, func(context.Context) {
			if !g.leading() {
				return // a fleet's escrow expires once, on its leader
			}
			if n, err := g.escrow.Sweep(); err != nil {
				g.logger.Error("escrow expiry", "err", err)
			} else if n > 0 {
				g.logger.Info("escrowed messages expired: content destroyed", "messages", n)
			}
		})
		return nil
	})
}

// PortalAddr is the address of the portal listener, "" if off.
func (g *Gateway) PortalAddr() string { return addrString(g.portalLn) }

// Escrow is the escrow store, nil unless escrow is on.
func (g *Gateway) Escrow() *queue.Escrow { return g.escrow }

// replyPolicy runs the live policy over a reply from the portal, as over
// any message from outside the trusted networks: the rules decide its
// chain (a rule may, say, require verified TLS to the tenant). A reply
// the rules would reject at SMTP time still goes, by TLS: it answers
// mail the organisation sent, and the refusal is logged.
func (g *Gateway) replyPolicy(env queue.Envelope, msg []byte) ([]queue.RcptDecision, []byte) {
	engine := g.policy.Load()
	if engine == nil {
		return env.Decisions, msg
	}
	res, out := policy.Apply(engine, policy.Session{From: env.From, Recipients: env.Recipients}, msg)
	if res.Reject != "" {
		g.logger.Warn("a portal reply matches a rejecting rule; it goes by TLS", "rule", res.RejectRule)
		return env.Decisions, msg
	}
	var d []queue.RcptDecision
	for _, rd := range res.Recipients {
		d = append(d, queue.RcptDecision{Chain: rd.Chain.Strings(), Rules: rd.Rules, By: rd.By,
			Reasons: append([]string{"escrow portal: reply"}, rd.Reasons...)})
	}
	return d, out
}

// openEscrowObjects connects to escrow.object_store and checks its
// bucket (nil when it is not configured): a node that cannot store
// escrowed contents does not start.
func openEscrowObjects(cfg *config.Config) (queue.ObjectStore, error) {
	o, err := objectstore.FromConfig(cfg.Escrow.ObjectStore)
	if err != nil || o == nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := o.Check(ctx); err != nil {
		return nil, err
	}
	return o, nil
}
