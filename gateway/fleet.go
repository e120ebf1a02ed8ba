package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"time"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/pgstore"
	"github.com/sealgate/sealgate/queue"
)

// A fleet: with store.postgres.dsn, what nodes must agree on lives in
// the shared store (pgstore), which the spool hands it to
// (queue.Store.UseShared), and the node's spool keeps only its mail.
// The wiring is here; callers see the same methods either way.

// openShared connects to the shared store when one is configured (nil,
// nil when not). A node that cannot reach it at start does not start:
// it would otherwise deliver without the history the fleet learned.
func openShared(cfg *config.Config, logger *slog.Logger) (*pgstore.Store, error) {
	if !cfg.Shared() {
		return nil, nil
	}
	s, err := pgstore.Open(context.Background(), pgstore.Options{DSN: cfg.Store.Postgres.DSN, KeyFile: cfg.FleetKeyFile(),
		Logger: logger.With("component", "shared-store")})
	if err != nil {
		return nil, fmt.Errorf("store.postgres: %w", err)
	}
	logger.Info("shared store connected: TLS history, API keys and tokens, keys, escrow and the leader election are the fleet's",
		"schema_version", pgstore.SchemaVersion())
	return s, nil
}

// startFleet runs what a fleet node runs besides its mail: the leader
// election, and a watch on the shared store that says in the log when
// it is lost and back (mail that needs it waits meanwhile: a delivery
// never goes out without the TLS history).
func (g *Gateway) startFleet(ctx context.Context) {
	if g.shared == nil {
		return
	}
	g.goServe("audit shipping", func() error { every(ctx, auditShipInterval, g.shipAudit); return nil })
	g.leader = g.shared.NewLeader(10 * time.Second)
	g.leader.OnChange = g.metrics.Leading
	g.metrics.Leading(false)
	g.metrics.SharedStoreUp(true)
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

// closeStores closes the spool and the shared store (when New fails
// half-way).
func closeStores(spool *queue.Store, shared *pgstore.Store) {
	spool.Close()
	if shared != nil {
		shared.Close()
	}
}

// sharedAs is the fleet's shared store as what T asks of it (the OAuth
// tokens, signed requests' nonces, send counts), or T's nil on a single
// node, where they stay in the node's memory (never a typed nil).
func sharedAs[T any](g *Gateway) T {
	var none T
	if g.shared == nil {
		return none
	}
	return any(g.shared).(T)
}

// rateNode names this process among the nodes sharing send counts: its
// host name and a random suffix (a restarted node's earlier count stays
// counted until it ages out, as its messages do).
func (g *Gateway) rateNode() string {
	var b [4]byte
	rand.Read(b[:])
	return g.cfg.ServerHostname() + "/" + hex.EncodeToString(b[:])
}

// sharedStoreState is the shared store's state for /readyz, asked at
// each probe (nil on a single node).
func (g *Gateway) sharedStoreState() func() string {
	if g.shared == nil {
		return nil
	}
	return func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if g.shared.Ping(ctx) == nil {
			return "up"
		}
		return "down"
	}
}

// auditShipInterval is how often a fleet node ships its audit chain to
// the shared store (the fleet's trail lags this node's by at most this).
const auditShipInterval = 10 * time.Second

// shipAudit copies this node's new audit entries and checkpoints to the
// fleet's trail.
func (g *Gateway) shipAudit(context.Context) {
	n, err := g.audit.Ship(g.shared, g.cfg.ServerHostname())
	switch {
	case err != nil:
		g.logger.Error("audit shipping to the shared store", "err", err)
	case n > 0:
		g.logger.Debug("audit entries shipped to the shared store", "entries", n)
	}
}

// signFleetAudit ships this node's chain and, on the leader, signs a
// fleet checkpoint over every chain's head.
func (g *Gateway) signFleetAudit() {
	if g.shared == nil {
		return
	}
	g.shipAudit(context.Background())
	if !g.leading() {
		return
	}
	if err := g.audit.SignFleet(g.shared, time.Now()); err != nil {
		g.logger.Error("fleet audit checkpoint", "err", err)
	}
}
