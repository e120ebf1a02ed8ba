package gateway

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/sealgate/sealgate/certs"
)

// logCertificate says which listener certificate is served: what an
// admin debugging a connector needs to compare with what the tenant's
// connector expects (its names) and to plan renewal (its expiry).
func logCertificate(logger *slog.Logger, r *certs.CertReloader, event string) {
	leaf := r.Leaf()
	certFile, _ := r.Files()
	if leaf == nil {
		logger.Warn(event+": the certificate does not parse", "file", certFile)
		return
	}
	logger.Info(event, "file", certFile, "subject", leaf.Subject.String(), "issuer", leaf.Issuer.String(),
		"names", strings.Join(leaf.DNSNames, ","), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
}

// Certificate expiry warnings, as a mail admin expects from a certificate
// nobody renews by hand: one warning as each threshold is crossed.
var expiryThresholds = []int{30, 14, 3}

// certExpiryWatch warns when the listener certificate comes within 30,
// 14 and 3 days of its expiry (once per threshold and certificate), and
// every check once it has expired.
type certExpiryWatch struct {
	certs  *certs.CertReloader
	logger *slog.Logger
	now    func() time.Time
	warned map[string]int // certificate serial → smallest threshold warned
}

func (w *certExpiryWatch) check(context.Context) {
	leaf := w.certs.Leaf()
	if leaf == nil {
		return
	}
	left := leaf.NotAfter.Sub(w.now())
	days := int(left.Hours() / 24)
	if left <= 0 {
		w.logger.Error("the listener certificate has expired: clients that verify it (Exchange Online's connector does) cannot deliver",
			"subject", leaf.Subject.String(), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
		return
	}
	key := leaf.SerialNumber.String()
	crossed := 0 // the smallest threshold crossed
	for _, th := range expiryThresholds {
		if days < th {
			crossed = th
		}
	}
	if crossed != 0 && (w.warned[key] == 0 || w.warned[key] > crossed) {
		w.warned[key] = crossed
		w.logger.Warn("the listener certificate expires soon: renew it and send SIGHUP",
			"days_left", days, "subject", leaf.Subject.String(), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
}
