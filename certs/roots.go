package certs

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
)

// RootPool returns the system roots plus every certificate in the given
// PEM files (outbound.extra_root_cas). Errors name the file.
func RootPool(extraPEMFiles []string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	for _, f := range extraPEMFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("outbound.extra_root_cas: %w", err)
		}
		n := 0
		for {
			var b *pem.Block
			if b, data = pem.Decode(data); b == nil {
				break
			}
			if b.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("outbound.extra_root_cas: %s: %w", f, err)
			}
			pool.AddCert(c)
			n++
		}
		if n == 0 {
			return nil, fmt.Errorf("outbound.extra_root_cas: %s holds no PEM certificate", f)
		}
	}
	return pool, nil
}
