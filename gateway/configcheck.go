package gateway

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"time"

	"github.com/sealgate/sealgate/config"
)

// ConfigWarnings are what `config check` prints and serve logs about a
// config that is valid but probably not what the admin meant: the
// config's own (config.Warnings: trusted networks holding a cloud's
// shared range) and the listener certificate's — expired, within 30
// days of expiry, or not covering hostname, the name a tenant's
// connector checks. A certificate that does not load is an error at
// start, not a warning.
func ConfigWarnings(cfg *config.Config, now time.Time) []string {
	out := cfg.Warnings()
	file := cfg.Inbound.TLS.CertFile
	if file == "" {
		return append(out, fmt.Sprintf("inbound.tls: no certificate configured: a self-signed one is made for %s, which Microsoft 365 and Google Workspace connectors that require a CA-signed certificate refuse", cfg.ServerHostname()))
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return out // serve refuses it with the reason
	}
	var leaf *x509.Certificate
	for rest := data; leaf == nil; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		if block.Type == "CERTIFICATE" {
			leaf, _ = x509.ParseCertificate(block.Bytes)
		}
	}
	if leaf == nil {
		return out
	}
	warn := func(format string, args ...any) {
		out = append(out, cfg.FieldError("inbound.tls.cert_file", fmt.Errorf(format, args...)).Error())
	}
	switch left := leaf.NotAfter.Sub(now); {
	case left <= 0:
		warn("%s expired on %s: connectors that verify it (Exchange Online's does) cannot deliver", file, leaf.NotAfter.UTC().Format(time.DateOnly))
	case left < 30*24*time.Hour:
		warn("%s expires on %s, in %d days: renew it and send SIGHUP", file, leaf.NotAfter.UTC().Format(time.DateOnly), int(left.Hours()/24))
	}
	if host := cfg.ServerHostname(); leaf.VerifyHostname(host) != nil {
		warn("%s names %v, which do not cover hostname %q, the name the tenant's connector is told to verify", file, leaf.DNSNames, host)
	}
	return out
}
