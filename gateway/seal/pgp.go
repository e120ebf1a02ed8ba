package seal

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/gateway/delivery"
	"github.com/sealgate/sealgate/gateway/scheduler"
	"github.com/sealgate/sealgate/queue"
)

// RecipientKeys finds the OpenPGP key to encrypt to for an address —
// from the key store, or discovered, within ctx — or an error saying
// why there is none and what was tried (wrapping certs.ErrNoUsableKey
// when there simply is no usable key). certs.Keyring implements it.
type RecipientKeys interface {
	FindOpenPGPRecipient(ctx context.Context, address string) (*certs.OpenPGPRecipient, error)
}

// PGP is the pgp chain method.
type PGP struct {
	keys        RecipientKeys
	archive     *certs.OpenPGPRecipient
	placeholder string
	now         func() time.Time
	logger      *slog.Logger
}

// PGPOptions configure NewPGP; nil Now and Logger take time.Now and a
// discarding logger.
type PGPOptions struct {
	Keys RecipientKeys
	// Archive, when not nil, is the organisation's archive key
	// (keys.archive_key_file): every message is also encrypted to it.
	Archive *certs.OpenPGPRecipient
	// Subject is the placeholder Subject outside (keys.encrypted_subject).
	Subject string
	Now     func() time.Time
	Logger  *slog.Logger
}

// NewPGP returns the pgp method.
func NewPGP(o PGPOptions) *PGP {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &PGP{keys: o.Keys, archive: o.Archive, placeholder: o.Subject, now: o.Now, logger: o.Logger}
}

// Prepare encrypts body to the key of every recipient of g. A recipient
// without a usable key makes the whole group move on to the next method
// of its chain (Skip, with the reason); at the end of a chain there is
// nothing to skip to, and the group is held (deferred with the reason,
// bounced at expiry) so that a key imported meanwhile still serves it.
func (p *PGP) Prepare(ctx context.Context, m *queue.Message, g scheduler.Group, spool scheduler.Body) scheduler.Action {
	var to []*certs.OpenPGPRecipient
	var missing []string
	for _, rcpt := range g.Rcpts {
		r, err := p.keys.FindOpenPGPRecipient(ctx, rcpt)
		if err != nil {
			missing = append(missing, strings.TrimPrefix(err.Error(), certs.ErrNoUsableKey.Error()+": "))
			continue
		}
		to = append(to, r)
	}
	if len(missing) > 0 {
		why := strings.Join(missing, "; ")
		if g.HasNext {
			return scheduler.Action{Outcome: &queue.RcptOutcome{Skip: true, Status: "4.7.0", Message: why}}
		}
		return scheduler.Action{Outcome: &queue.RcptOutcome{Status: "4.7.0", Message: "held: the chain ends in pgp and " + why}}
	}
	if err := ctx.Err(); err != nil {
		return scheduler.Action{Outcome: &queue.RcptOutcome{Status: "4.3.0", Message: "encryption interrupted"}}
	}
	now := p.now()
	keys := make([]string, len(to))
	for i, r := range to {
		keys[i] = r.Key.Address + " key " + r.Key.Fingerprint + " (" + r.Key.Algorithm + ")"
	}
	if p.archive != nil {
		// Never without the archive copy the organisation asked for: an
		// archive key that expired since start defers until it is replaced.
		if err := p.archive.Usable(now); err != nil {
			p.logger.Error("the organisation archive key (keys.archive_key_file) is no longer usable; PGP/MIME mail waits", "queue_id", m.ID, "err", err)
			return scheduler.Action{Outcome: &queue.RcptOutcome{Status: "4.7.0", Message: "organisation archive key unusable: " + err.Error()}}
		}
		to = append(to, p.archive)
		keys = append(keys, "the organisation archive key "+p.archive.Key.Fingerprint+" ("+p.archive.Key.Algorithm+")")
	}
	body, err := spool.Bytes()
	if err != nil {
		return scheduler.Action{Outcome: &queue.RcptOutcome{Status: "4.3.0", Message: "the message could not be read from the spool"}}
	}
	out, err := pgpMIME(body, p.placeholder, func(w io.Writer) (io.WriteCloser, error) {
		return certs.EncryptOpenPGP(w, to, now)
	})
	if err != nil {
		p.logger.Error("OpenPGP encryption failed", "queue_id", m.ID, "err", err)
		return scheduler.Action{Outcome: &queue.RcptOutcome{Status: "4.3.0", Message: "OpenPGP encryption failed"}}
	}
	p.logger.Info("message encrypted with OpenPGP", "queue_id", m.ID, "domain", g.Domain, "keys", strings.Join(keys, ", "))
	return scheduler.Action{Send: delivery.Bytes(out), Protection: "pgp: PGP/MIME encrypted to " + strings.Join(keys, ", ")}
}
