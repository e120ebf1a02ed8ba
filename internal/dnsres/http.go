package dnsres

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// DialContext dials addr (host:port) after resolving host through this
// resolver, like everything else outbound, not through the system's.
func (r *Resolver) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	addrs, err := r.Addrs(ctx, host)
	if err != nil {
		return nil, err
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("no address for %s", host)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, net.JoinHostPort(addrs[0].String(), port))
}

// HTTPSClient returns the client for outbound HTTPS fetches (MTA-STS
// policies, TLSRPT reports): names resolved through r, certificates
// verified against roots, no proxy, no keep-alives, and no redirects
// (RFC 8461 §3.3 forbids following them for MTA-STS; a report endpoint
// has no reason to redirect either).
func (r *Resolver) HTTPSClient(roots *x509.CertPool, timeout time.Duration) *http.Client {
	transport := &http.Transport{
		TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		DialContext:           r.DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: timeout,
		DisableKeepAlives:     true,
		Proxy:                 nil,
	}
	return &http.Client{
		Transport:     transport,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return errors.New("redirects are not followed") },
	}
}
