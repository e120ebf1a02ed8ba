package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/gateway/admin"
	"github.com/sealgate/sealgate/pgstore"
	"github.com/sealgate/sealgate/queue"
)

// A fleet: with store.postgres.dsn, what nodes must agree on lives in
// the shared store (pgstore) and the node's spool keeps only its mail.
// The wiring is here; callers see the same methods either way.

// tlsHistory is the TLS history of destinations: the spool's own on a
// single node, the shared one in a fleet.
type tlsHistory interface {
	ObserveTLS(obs queue.TLSObservation) error
	DomainInfo(domain string) (*queue.DomainInfo, error)
	Domains() ([]queue.DomainInfo, error)
	ResetDomain(domain string) error
}

// fleetSpool is the node's spool with the TLS history taken from the
// shared store: the scheduler, the TLS monitor and the admin API use it
// as they use the spool.
type fleetSpool struct {
	*queue.Store
	history tlsHistory
}

func (f *fleetSpool) ObserveTLS(obs queue.TLSObservation) error { return f.history.ObserveTLS(obs) }
func (f *fleetSpool) DomainInfo(domain string) (*queue.DomainInfo, error) {
	return f.history.DomainInfo(domain)
}
func (f *fleetSpool) Domains() ([]queue.DomainInfo, error) { return f.history.Domains() }
func (f *fleetSpool) ResetDomain(domain string) error      { return f.history.ResetDomain(domain) }

// openShared connects to the shared store when one is configured (nil,
// nil when not). A node that cannot reach it at start does not start:
// it would otherwise deliver without the history the fleet learned.
func openShared(cfg *config.Config, logger *slog.Logger) (*pgstore.Store, error) {
	if !cfg.Shared() {
		return nil, nil
	}
	s, err := pgstore.Open(context.Background(), pgstore.Options{DSN: cfg.Store.Postgres.DSN,
		Logger: logger.With("component", "shared-store")})
	if err != nil {
		return nil, fmt.Errorf("store.postgres: %w", err)
	}
	logger.Info("shared store connected: TLS history, API keys and the leader election are the fleet's",
		"schema_version", pgstore.SchemaVersion())
	return s, nil
}

// spool is the store the scheduler, the monitor and the admin API use.
func (g *Gateway) spool() *fleetSpool {
	if g.shared != nil {
		return &fleetSpool{Store: g.store, history: g.shared}
	}
	return &fleetSpool{Store: g.store, history: g.store}
}

// startFleet runs what a fleet node runs besides its mail: the leader
// election, and a watch on the shared store that says in the log when
// it is lost and back (mail that needs it waits meanwhile: a delivery
// never goes out without the TLS history).
func (g *Gateway) startFleet(ctx context.Context) {
	if g.shared == nil {
		return
	}
	g.leader = g.shared.NewLeader(10 * time.Second)
	g.leader.OnChange = g.metrics.Leading
	g.metrics.Leading(false)
	g.metrics.SharedStoreUp(true)
	g.sharedUp.Store(true)
	g.goServe("leader election", func() error { g.leader.Run(ctx); return nil })
	g.goServe("shared store watch", func() error {
		up := true
		every(ctx, 10*time.Second, func(ctx context.Context) {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := g.shared.Ping(pctx)
			cancel()
			switch {
			case err != nil && up:
				g.logger.Error("shared store unreachable: deliveries that need the TLS history wait, API keys cannot be checked", "err", err)
			case err == nil && !up:
				g.logger.Info("shared store reachable again")
			}
			up = err == nil
			g.sharedUp.Store(up)
			g.metrics.SharedStoreUp(up)
		})
		return nil
	})
}

// leading reports whether this node runs the leader-only jobs: always
// on a single node, only the elected one in a fleet.
func (g *Gateway) leading() bool {
	return g.leader == nil || g.leader.IsLeader()
}

// apiKeys is where the REST API's keys live: the fleet's store, or the
// spool.
func (g *Gateway) apiKeys() admin.APIKeyStore {
	if g.shared != nil {
		return g.shared
	}
	return g.store
}

// closeStores closes the spool and the shared store (when New fails
// half-way).
func closeStores(spool *queue.Store, shared *pgstore.Store) {
	spool.Close()
	if shared != nil {
		shared.Close()
	}
}

// keyRecords is where correspondents' keys live: the fleet's store, or
// the spool.
func (g *Gateway) keyRecords() certs.RecordStore {
	if g.shared != nil {
		return g.shared
	}
	return g.store
}

// tokenStore is where OAuth tokens live in a fleet (nil: the node's
// memory, on a single node).
func (g *Gateway) tokenStore() admin.TokenStore {
	if g.shared != nil {
		return g.shared
	}
	return nil
}

// sharedStoreState is the shared store's state for /readyz (nil on a
// single node).
func (g *Gateway) sharedStoreState() func() string {
	if g.shared == nil {
		return nil
	}
	return func() string {
		if g.sharedUp.Load() {
			return "up"
		}
		return "down"
	}
}
