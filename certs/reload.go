package certs

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync/atomic"

	"github.com/sealgate/sealgate/internal/safeio"
)

// CertReloader serves the listener certificate and swaps it on Reload,
// so a renewed certificate takes effect on SIGHUP for new handshakes
// while existing connections continue.
type CertReloader struct {
	certFile, keyFile string
	cert              atomic.Pointer[tls.Certificate]
}

// NewCertReloader loads the key pair now.
func NewCertReloader(certFile, keyFile string) (*CertReloader, error) {
	r := &CertReloader{certFile: certFile, keyFile: keyFile}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload reads the files again; on failure the current certificate stays.
// A private key that others may read, or that group or others may
// write, is refused, as sshd refuses its host keys. A group-readable key
// is accepted: Debian's ssl-cert group convention (0640 root:ssl-cert)
// depends on it.
func (r *CertReloader) Reload() error {
	if _, err := safeio.CheckPerm(r.keyFile, 0o027); err != nil {
		return fmt.Errorf("certificate key: %w; chmod 600 (or 640) it", err)
	}
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("certificate %s with key %s: %w", r.certFile, r.keyFile, err)
	}
	r.cert.Store(&c)
	return nil
}

// GetCertificate is a tls.Config.GetCertificate callback.
func (r *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cert.Load(), nil
}

// Leaf is the certificate being served, parsed (nil if it does not
// parse, which LoadX509KeyPair would have refused).
func (r *CertReloader) Leaf() *x509.Certificate {
	c := r.cert.Load()
	if c == nil || len(c.Certificate) == 0 {
		return nil
	}
	if c.Leaf != nil {
		return c.Leaf
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return nil
	}
	return leaf
}

// Files are the certificate and key files served.
func (r *CertReloader) Files() (certFile, keyFile string) { return r.certFile, r.keyFile }
