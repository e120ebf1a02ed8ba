package gateway

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/certs"
)

// TestCertificateExpiryWarnings: one warning as each of 30, 14 and 3
// days before expiry is crossed, none twice, and an error once expired.
func TestCertificateExpiryWarnings(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if err := certs.EnsureSelfSigned(certFile, keyFile, []string{"gw.test"}); err != nil {
		t.Fatal(err)
	}
	r, err := certs.NewCertReloader(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	notAfter := r.Leaf().NotAfter
	var logs bytes.Buffer
	now := notAfter.Add(-40 * 24 * time.Hour)
	w := &certExpiryWatch{certs: r, logger: slog.New(slog.NewTextHandler(&logs, nil)), now: func() time.Time { return now }, warned: map[string]int{}}
	count := func() int { return strings.Count(logs.String(), "expires soon") }
	for _, step := range []struct {
		daysLeft float64
		want     int
	}{{40, 0}, {29.5, 1}, {25, 1}, {13.5, 2}, {13, 2}, {2.5, 3}, {1, 3}} {
		now = notAfter.Add(-time.Duration(step.daysLeft * 24 * float64(time.Hour)))
		w.check(context.Background())
		if got := count(); got != step.want {
			t.Fatalf("%.1f days left: %d warnings, want %d\n%s", step.daysLeft, got, step.want, logs.String())
		}
	}
	now = notAfter.Add(time.Hour)
	w.check(context.Background())
	if !strings.Contains(logs.String(), "has expired") {
		t.Errorf("no error once expired:\n%s", logs.String())
	}
}
