package gateway

import (
	"crypto/ed25519"
	"crypto/rsa"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/gateway/delivery"
)

// dkimSigning applies DKIM to outgoing messages. A domain without a key
// is logged once, not once per message: the admin needs to know, the log
// does not need ten thousand copies.
type dkimSigning struct {
	signer   atomic.Pointer[certs.DKIMSigner] // nil: no keys configured; swapped on reload
	logger   *slog.Logger
	unsigned sync.Map // domain → struct{}
}

// sign returns body signed for its From domain (the signatures in front
// of it, the body read once as a stream), or unchanged when that domain
// has no key or signing fails (logged: the message still goes out, as
// it would have without DKIM).
func (d *dkimSigning) sign(id string, body delivery.Body) delivery.Body {
	signer := d.signer.Load()
	if signer == nil {
		return body
	}
	r, err := body.Open()
	if err != nil {
		// Not the key's fault: the message cannot be read now. It waits
		// (never leaves unsigned for that).
		d.logger.Error("cannot read the message to sign it; delivery deferred", "queue_id", id, "err", err)
		return delivery.Unreadable(body.Size(), err)
	}
	defer r.Close()
	tr := &trackedReader{r: r}
	sigs, domain, ok, err := signer.SignStream(tr)
	switch {
	case tr.err != nil:
		d.logger.Error("cannot read the message to sign it; delivery deferred", "queue_id", id, "err", tr.err)
		return delivery.Unreadable(body.Size(), tr.err)
	case err != nil:
		d.logger.Error("DKIM signing failed; sending unsigned", "queue_id", id, "domain", domain, "err", err)
	case !ok:
		if _, seen := d.unsigned.LoadOrStore(domain, struct{}{}); !seen {
			d.logger.Warn("no DKIM key for sender domain; its mail leaves unsigned (logged once per domain)", "domain", domain)
		}
	default:
		return delivery.WithHeader(sigs, body)
	}
	return body
}

// trackedReader remembers a read error (other than the end).
type trackedReader struct {
	r   io.Reader
	err error
}

func (t *trackedReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF && t.err == nil {
		t.err = err
	}
	return n, err
}

// logDKIMKeys says which DKIM keys are in use.
func logDKIMKeys(logger *slog.Logger, keys []config.DKIMKey) {
	for _, k := range keys {
		algo := "unknown"
		if key, err := config.LoadDKIMKey(k.KeyFile); err == nil {
			switch pub := key.Public().(type) {
			case *rsa.PublicKey:
				algo = fmt.Sprintf("rsa-%d", pub.N.BitLen())
			case ed25519.PublicKey:
				algo = "ed25519"
			}
		}
		logger.Info("DKIM key loaded", "domain", k.Domain, "selector", k.Selector, "algorithm", algo, "file", k.KeyFile)
	}
}
