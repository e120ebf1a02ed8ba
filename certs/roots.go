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
	return pool, addPEMFiles(pool, extraPEMFiles, "outbound.extra_root_cas")
}

// SMIMERootPool returns the S/MIME trust store: the certificates in the
// given PEM files (keys.smime_roots) and nothing else — not the
// system's TLS roots, which vouch for web servers, not for mail
// certificates. No files: nil, which trusts no chain at all.
func SMIMERootPool(pemFiles []string) (*x509.CertPool, error) {
	if len(pemFiles) == 0 {
		return nil, nil
	}
	pool := x509.NewCertPool()
	return pool, addPEMFiles(pool, pemFiles, "keys.smime_roots")
}

func addPEMFiles(pool *x509.CertPool, files []string, field string) error {
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("%s: %w", field, err)
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
				return fmt.Errorf("%s: %s: %w", field, f, err)
			}
			pool.AddCert(c)
			n++
		}
		if n == 0 {
			return fmt.Errorf("%s: %s holds no PEM certificate", field, f)
		}
	}
	return nil
}
