package gateway

import (
	"log/slog"
	"sync"

	"github.com/sealgate/sealgate/certs"
)

// dkimSigning applies DKIM to outgoing messages. A domain without a key
// is logged once, not once per message: the admin needs to know, the log
// does not need ten thousand copies.
type dkimSigning struct {
	signer   *certs.DKIMSigner
	logger   *slog.Logger
	unsigned sync.Map // domain → struct{}
}

// sign returns body signed for its From domain, or unchanged when that
// domain has no key or signing fails (logged: the message still goes
// out, as it would have without DKIM).
func (d *dkimSigning) sign(id string, body []byte) []byte {
	signed, domain, ok, err := d.signer.Sign(body)
	switch {
	case err != nil:
		d.logger.Error("DKIM signing failed; sending unsigned", "queue_id", id, "domain", domain, "err", err)
	case !ok:
		if _, seen := d.unsigned.LoadOrStore(domain, struct{}{}); !seen {
			d.logger.Warn("no DKIM key for sender domain; its mail leaves unsigned (logged once per domain)", "domain", domain)
		}
	}
	return signed
}
