package gateway

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// deliveryError is a failure of a delivery step that is not an SMTP
// reply from the destination (DNS, connection, TLS): it carries what the
// recipient's outcome and the DSN need.
type deliveryError struct {
	Temporary bool
	Code      int    // SMTP reply code when the destination gave one
	Status    string // RFC 3463 enhanced status
	Msg       string // safe to show to the sender
}

func (e *deliveryError) Error() string { return e.Msg }

func tempErr(status, format string, args ...any) *deliveryError {
	return &deliveryError{Temporary: true, Status: status, Msg: fmt.Sprintf(format, args...)}
}

func permErr(status, format string, args ...any) *deliveryError {
	return &deliveryError{Status: status, Msg: fmt.Sprintf(format, args...)}
}

// mxResolver finds where mail for a domain goes (RFC 5321 §5.1) by asking
// one DNS server directly with miekg/dns: outbound.dns_resolver, or the
// first nameserver of /etc/resolv.conf.
type mxResolver struct {
	server  string
	timeout time.Duration
	// dnssecTrusted: the server validates DNSSEC and its AD bit can be
	// believed (outbound.dnssec_trusted_resolver), which DANE needs.
	dnssecTrusted bool
}

// Bounds on what one delivery attempt tries (Postfix has similar limits:
// smtp_mx_address_limit, smtp_mx_session_limit).
const (
	maxMXHosts      = 10
	maxAddrsPerHost = 4
)

// mxHost is one destination host with its addresses.
type mxHost struct {
	Name  string
	Pref  uint16
	Addrs []netip.Addr
	// Secure: the MX answer was DNSSEC-authenticated (AD bit).
	Secure bool
}

func newMXResolver(server string, timeout time.Duration) (*mxResolver, error) {
	if server == "" {
		conf, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil {
			return nil, fmt.Errorf("no dns_resolver configured and /etc/resolv.conf unusable: %w", err)
		}
		if len(conf.Servers) == 0 {
			return nil, errors.New("no dns_resolver configured and /etc/resolv.conf lists no nameserver")
		}
		server = net.JoinHostPort(conf.Servers[0], conf.Port)
	}
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	return &mxResolver{server: server, timeout: timeout}, nil
}

// query asks one question; a truncated UDP answer is retried over TCP.
// Transport failures and SERVFAIL-like answers are temporary errors;
// NXDOMAIN is returned as a message with that rcode.
func (r *mxResolver) query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true
	m.AuthenticatedData = true // ask for the AD bit (RFC 6840 §5.7)
	m.SetEdns0(4096, false)
	c := &dns.Client{Timeout: r.timeout}
	resp, _, err := c.ExchangeContext(ctx, m, r.server)
	if err == nil && resp.Truncated {
		c.Net = "tcp"
		resp, _, err = c.ExchangeContext(ctx, m, r.server)
	}
	if err != nil {
		return nil, tempErr("4.4.3", "DNS lookup of %s %s failed: %v", dns.TypeToString[qtype], name, err)
	}
	switch resp.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
		return resp, nil
	}
	return nil, tempErr("4.4.3", "DNS lookup of %s %s failed: %s", dns.TypeToString[qtype], name, dns.RcodeToString[resp.Rcode])
}

// lookupMX returns the hosts to try for domain in order: MX preference
// ascending, random among equal preferences (RFC 5321 §5.1), or the
// domain itself when it has no MX (implicit MX). A null MX (RFC 7505) and
// a domain that does not exist are permanent errors; a DNS failure is
// temporary, never "no MX".
func (r *mxResolver) lookupMX(ctx context.Context, domain string) ([]mxHost, error) {
	resp, err := r.query(ctx, domain, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	if resp.Rcode == dns.RcodeNameError {
		return nil, permErr("5.1.2", "domain %s does not exist", domain)
	}
	var hosts []mxHost
	for _, rr := range resp.Answer {
		if mx, ok := rr.(*dns.MX); ok {
			hosts = append(hosts, mxHost{Name: strings.ToLower(strings.TrimSuffix(mx.Mx, ".")), Pref: mx.Preference})
		}
	}
	if len(hosts) == 1 && hosts[0].Name == "" {
		return nil, permErr("5.1.10", "domain %s does not accept mail (null MX, RFC 7505)", domain)
	}
	if len(hosts) == 0 {
		hosts = []mxHost{{Name: strings.ToLower(domain)}}
	}
	for i := range hosts {
		hosts[i].Secure = resp.AuthenticatedData
	}
	rand.Shuffle(len(hosts), func(i, j int) { hosts[i], hosts[j] = hosts[j], hosts[i] })
	slices.SortStableFunc(hosts, func(a, b mxHost) int { return int(a.Pref) - int(b.Pref) })
	// A hostile zone must not make one attempt dial hundreds of hosts.
	if len(hosts) > maxMXHosts {
		hosts = hosts[:maxMXHosts]
	}

	var firstErr error
	resolved := hosts[:0]
	for _, h := range hosts {
		if h.Name == "" {
			continue // a "." among real MX records is ignored
		}
		addrs, err := r.lookupAddrs(ctx, h.Name)
		if err != nil && firstErr == nil {
			firstErr = err
		}
		if len(addrs) > maxAddrsPerHost {
			addrs = addrs[:maxAddrsPerHost]
		}
		if len(addrs) > 0 {
			h.Addrs = addrs
			resolved = append(resolved, h)
		}
	}
	if len(resolved) == 0 {
		if firstErr != nil {
			return nil, firstErr
		}
		return nil, tempErr("4.4.4", "no address for any mail host of %s", domain)
	}
	return resolved, nil
}

// lookupAddrs returns the IPv4 then IPv6 addresses of host.
func (r *mxResolver) lookupAddrs(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, nil
	}
	var addrs []netip.Addr
	var lastErr error
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		resp, err := r.query(ctx, host, qtype)
		if err != nil {
			lastErr = err
			continue
		}
		for _, rr := range resp.Answer {
			switch v := rr.(type) {
			case *dns.A:
				if a, ok := netip.AddrFromSlice(v.A.To4()); ok {
					addrs = append(addrs, a)
				}
			case *dns.AAAA:
				if a, ok := netip.AddrFromSlice(v.AAAA); ok {
					addrs = append(addrs, a)
				}
			}
		}
	}
	if len(addrs) == 0 && lastErr != nil {
		return nil, lastErr
	}
	return addrs, nil
}
