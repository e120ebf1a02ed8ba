package gateway

import (
	"context"
	"slices"
	"time"

	"github.com/sealgate/sealgate/gateway/audit"
	"github.com/sealgate/sealgate/gateway/report"
	"github.com/sealgate/sealgate/queue"
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
	g.signFleetAudit()
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

// sendReceipt spools the security receipt of m when it has just
// finished and a rule asked for one, and has it delivered.
func (g *Gateway) sendReceipt(m *queue.Message) {
	if m.DoneAt.IsZero() || m.Envelope.Receipt == "" || m.ReceiptID != "" {
		return
	}
	id, err := g.store.SendReceipt(m.ID, g.receiptFor(m))
	switch {
	case err != nil:
		g.logger.Error("security receipt not spooled; the spool sweep tries again", "queue_id", m.ID, "err", err)
	case id != "":
		g.logger.Info("security receipt queued", "queue_id", m.ID, "receipt_id", id, "rule", m.Envelope.Receipt)
		g.wake(id)
	}
}

// receiptFor is the receipt builder for m: with what the escrow store
// says of its escrowed recipients, read now, outside the spool's
// transaction the receipt is built in.
func (g *Gateway) receiptFor(m *queue.Message) queue.ReceiptFunc {
	if g.escrow == nil || !slices.ContainsFunc(m.Recipients, func(r queue.Recipient) bool { return r.Method() == "escrow" }) {
		return g.receipt
	}
	entries, err := g.escrow.ForQueueID(m.ID)
	if err != nil {
		g.logger.Warn("security receipt: the escrow store cannot say who opened the message", "queue_id", m.ID, "err", err)
		return g.receipt
	}
	opened := report.EscrowOpened{}
	for _, e := range entries {
		opened[e.Recipient.Address] = e.Recipient.Opened
	}
	b := report.ReceiptBuilder{Hostname: g.cfg.ServerHostname()}
	return func(m *queue.Message) (queue.Envelope, []byte, error) { return b.BuildWithEscrow(m, opened) }
}

// sendPendingReceipts sends the receipts a crash or an admin's action
// (queue delete --bounce) left unsent.
func (g *Gateway) sendPendingReceipts(ctx context.Context) {
	ids, err := g.store.PendingReceipts(ctx)
	if err != nil {
		g.logger.Error("pending security receipts", "err", err)
		return
	}
	for _, id := range ids {
		if m, err := g.store.Get(id); err == nil {
			g.sendReceipt(m)
		}
	}
}

// RecordAdmin puts an admin action done outside the admin API (a
// SIGHUP reload) in the audit trail.
func (g *Gateway) RecordAdmin(action, actor, detail string) {
	if err := g.audit.Record(audit.Admin(time.Now(), action, actor, "", detail)); err != nil {
		g.logger.Error("audit record of an admin action", "action", action, "err", err)
	}
}
