package dnsres

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// DialContext dials addr (host:port) after resolving host through this
// resolver, like everything else outbound, not through the system's.
func (r *Resolver) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return r.dialGuarded(ctx, network, addr, nil)
}

// HTTPSClient returns the client for outbound HTTPS fetches (MTA-STS
// policies, TLSRPT reports): names resolved through r, certificates
// verified against roots, no proxy, no keep-alives, and no redirects
// (RFC 8461 §3.3 forbids following them for MTA-STS; a report endpoint
// has no reason to redirect either).
func (r *Resolver) HTTPSClient(roots *x509.CertPool, timeout time.Duration) *http.Client {
	return r.GuardedHTTPSClient(roots, timeout, nil)
}

// GuardedHTTPSClient is HTTPSClient that asks guard about every address
// a name resolved to before dialling it, and dials only the first one
// guard lets through (nil guard: every address may be dialled). Key
// discovery uses it with netguard.Refuse, so that a partner's DNS cannot
// point the gateway at something internal.
func (r *Resolver) GuardedHTTPSClient(roots *x509.CertPool, timeout time.Duration, guard func(netip.Addr) error) *http.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		return r.dialGuarded(ctx, network, addr, guard)
	}
	transport := &http.Transport{
		TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		DialContext:           dial,
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

// dialGuarded dials the first address of host that guard (nil: any)
// lets through.
func (r *Resolver) dialGuarded(ctx context.Context, network, addr string, guard func(netip.Addr) error) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	addrs, err := r.Addrs(ctx, host)
	if err != nil {
		return nil, err
	}
	var refused error
	for _, a := range addrs {
		if guard != nil {
			if refused = guard(a); refused != nil {
				continue
			}
		}
		var d net.Dialer
		return d.DialContext(ctx, network, net.JoinHostPort(a.String(), port))
	}
	if refused != nil {
		return nil, fmt.Errorf("%s: %w", host, refused)
	}
	return nil, fmt.Errorf("no address for %s", host)
}
