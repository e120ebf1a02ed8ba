package gateway

import (
	"context"
	"time"
)

// auditPruneInterval is how often records past audit.retention are
// pruned.
const auditPruneInterval = 6 * time.Hour

// auditCheckpoint signs the audit chain's head when it moved.
func (g *Gateway) auditCheckpoint(context.Context) {
	cp, err := g.audit.Checkpoint(time.Now())
	switch {
	case err != nil:
		g.logger.Error("audit checkpoint", "err", err)
	case cp != nil:
		g.logger.Debug("audit checkpoint signed", "entry", cp.Seq)
	}
}

// auditPrune removes the records past audit.retention, up to a signed
// checkpoint that keeps the rest verifiable.
func (g *Gateway) auditPrune(context.Context) {
	n, err := g.audit.Prune(time.Now().Add(-g.cfg.Audit.Retention.D()))
	switch {
	case err != nil:
		g.logger.Error("audit retention", "err", err)
	case n > 0:
		g.logger.Info("audit records past their retention removed", "entries", n, "retention", g.cfg.Audit.Retention.D().String())
	}
}
