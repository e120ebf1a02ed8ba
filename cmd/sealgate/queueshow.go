package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/gateway/admin"
	"github.com/sealgate/sealgate/queue"
)

// queueShown is queue show --json: the message as the spool has it and
// the access records of its escrowed recipients.
type queueShown struct {
	*queue.Message
	Escrow []admin.EscrowRecord `json:"escrow,omitempty"`
}

// showQueueMessage is queue show: a message's envelope, recipients and
// history and, for the recipients it escrowed, their access logs (link
// issued, notice sent, code sent, opened, revoked…). An access log that
// cannot be read (the escrow key is missing, say) fails the command
// only for a message whose policy chain reaches escrow.
func showQueueMessage(configPath, id string, asJSON bool, out, errOut io.Writer) error {
	return withSpoolConfig(configPath, func(cfg *config.Config, ops admin.QueueOps) error {
		return showMessageOf(cfg, ops, id, asJSON, out, errOut)
	})
}

func showMessageOf(cfg *config.Config, ops admin.QueueOps, prefix string, asJSON bool, out, errOut io.Writer) error {
	id, err := ops.Resolve(prefix)
	if err != nil {
		return err
	}
	m, err := ops.Get(id)
	if err != nil {
		return err
	}
	recs, escrowErr := escrowOfMessage(ops, cfg, id)
	if asJSON {
		if err := printJSON(out, queueShown{Message: m, Escrow: recs}); err != nil {
			return err
		}
	} else {
		printMessage(out, m)
		printMessageEscrow(out, recs)
	}
	switch {
	case escrowErr == nil:
		return nil
	case !usesEscrow(m):
		return nil
	case errors.Is(escrowErr, admin.ErrEscrowOff):
		fmt.Fprintln(errOut, "sealgate: escrow access logs not shown:", escrowErr)
		return nil
	}
	return fmt.Errorf("escrow access log of %s: %w", id, escrowErr)
}

func escrowOfMessage(ops admin.QueueOps, cfg *config.Config, id string) ([]admin.EscrowRecord, error) {
	e, err := admin.EscrowOpsFor(ops, cfg)
	if err != nil {
		return nil, err
	}
	return e.ForQueueID(id)
}

// usesEscrow reports whether a recipient's chain reaches escrow.
func usesEscrow(m *queue.Message) bool {
	for _, r := range m.Recipients {
		if slices.Contains(r.Chain, "escrow") {
			return true
		}
	}
	return false
}

func printMessageEscrow(out io.Writer, recs []admin.EscrowRecord) {
	if len(recs) == 0 {
		return
	}
	fmt.Fprintln(out, "\nEscrow:")
	for _, r := range recs {
		fmt.Fprintf(out, "  %s: access %s, %s, opened %s, expires %s\n", printable(r.Recipient), r.ID, r.State, yesNo(r.Opened),
			r.Expires.Format(time.RFC3339))
		printEscrowEvents(out, "    ", r.Events)
	}
}
