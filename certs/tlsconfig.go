package certs

import (
	"crypto/tls"
	"fmt"
)

// serverCipherSuites are the TLS 1.2 suites the listener accepts: ECDHE
// key exchange and AEAD ciphers of 128 bits or more only (no CBC, no RSA
// key exchange, no 3DES). TLS 1.3 suites are not configurable in Go and
// all qualify.
var serverCipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// StrongCipherSuites lists the TLS 1.2 suites sealgate uses, inbound and
// outbound: ECDHE with AEAD ciphers of 128 bits or more.
func StrongCipherSuites() []uint16 { return append([]uint16(nil), serverCipherSuites...) }

// ServerTLSConfig is the inbound TLS configuration: TLS 1.2 minimum,
// strong suites only, the certificate from r.
func ServerTLSConfig(r *CertReloader) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		CipherSuites:   append([]uint16(nil), serverCipherSuites...),
		GetCertificate: r.GetCertificate,
	}
}

// TLSVersionName is the short name of a TLS version as the spool, the
// logs and the Received header show it ("TLS1.3").
func TLSVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "TLS1.3"
	case tls.VersionTLS12:
		return "TLS1.2"
	case tls.VersionTLS11:
		return "TLS1.1"
	case tls.VersionTLS10:
		return "TLS1.0"
	}
	return fmt.Sprintf("TLS-0x%04x", v)
}
