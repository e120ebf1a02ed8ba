package certs

import "crypto/tls"

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
