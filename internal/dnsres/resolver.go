package dnsres

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

// Error is a lookup that failed in a way mail delivery must act on: it
// carries the RFC 3463 status the failure means (4.4.3 the DNS failed,
// 5.1.2 the domain does not exist, 5.1.10 null MX, 4.4.4 no address) and
// whether trying again later can help.
type Error struct {
	Temporary bool
	Status    string
	Msg       string
}

func (e *Error) Error() string { return e.Msg }

func tempErr(status, format string, args ...any) *Error {
	return &Error{Temporary: true, Status: status, Msg: fmt.Sprintf(format, args...)}
}

func permErr(status, format string, args ...any) *Error {
	return &Error{Status: status, Msg: fmt.Sprintf(format, args...)}
}

// Resolver asks one DNS server. It is safe for concurrent use.
type Resolver struct {
	server  string
	timeout time.Duration
	cache   *answerCache
	// DNSSECTrusted: the server validates DNSSEC and its AD bit can be
	// believed (outbound.dnssec_trusted_resolver), which DANE needs.
	DNSSECTrusted bool
}

// Bounds on what one lookup returns (Postfix has similar limits:
// smtp_mx_address_limit, smtp_mx_session_limit): a hostile zone must not
// make one delivery attempt dial hundreds of hosts.
const (
	MaxMXHosts      = 10
	MaxAddrsPerHost = 4
)

// MXHost is one destination host with its addresses.
type MXHost struct {
	Name  string
	Pref  uint16
	Addrs []netip.Addr
	// Secure: the MX answer was DNSSEC-authenticated (AD bit).
	Secure bool
}

// New returns a resolver asking server (host:port), or the first
// nameserver of /etc/resolv.conf when server is "". A timeout of 0 means
// 10 seconds per query.
func New(server string, timeout time.Duration) (*Resolver, error) {
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
	return &Resolver{server: server, timeout: timeout, cache: newAnswerCache()}, nil
}

// Query asks one question, or answers it from the cache while an
// earlier answer's TTL lasts; a truncated UDP answer is retried over TCP.
// Transport failures and SERVFAIL-like answers are temporary *Error;
// NXDOMAIN is returned as a message with that rcode.
func (r *Resolver) Query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	if cached := r.cache.get(name, qtype); cached != nil {
		return cached, nil
	}
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
		r.cache.put(name, qtype, resp)
		return resp, nil
	}
	return nil, tempErr("4.4.3", "DNS lookup of %s %s failed: %s", dns.TypeToString[qtype], name, dns.RcodeToString[resp.Rcode])
}

// MX returns the hosts to try for domain in order: MX preference
// ascending, random among equal preferences (RFC 5321 §5.1), or the
// domain itself when it has no MX (implicit MX). A null MX (RFC 7505) and
// a domain that does not exist are permanent errors; a DNS failure is
// temporary, never "no MX". At most MaxMXHosts hosts with at most
// MaxAddrsPerHost addresses each are returned.
func (r *Resolver) MX(ctx context.Context, domain string) ([]MXHost, error) {
	resp, err := r.Query(ctx, domain, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	if resp.Rcode == dns.RcodeNameError {
		return nil, permErr("5.1.2", "domain %s does not exist", domain)
	}
	var hosts []MXHost
	for _, rr := range resp.Answer {
		if mx, ok := rr.(*dns.MX); ok {
			hosts = append(hosts, MXHost{Name: strings.ToLower(strings.TrimSuffix(mx.Mx, ".")), Pref: mx.Preference})
		}
	}
	if len(hosts) == 1 && hosts[0].Name == "" {
		return nil, permErr("5.1.10", "domain %s does not accept mail (null MX, RFC 7505)", domain)
	}
	if len(hosts) == 0 {
		hosts = []MXHost{{Name: strings.ToLower(domain)}}
	}
	for i := range hosts {
		hosts[i].Secure = resp.AuthenticatedData
	}
	rand.Shuffle(len(hosts), func(i, j int) { hosts[i], hosts[j] = hosts[j], hosts[i] })
	slices.SortStableFunc(hosts, func(a, b MXHost) int { return int(a.Pref) - int(b.Pref) })
	if len(hosts) > MaxMXHosts {
		hosts = hosts[:MaxMXHosts]
	}

	var firstErr error
	resolved := hosts[:0]
	for _, h := range hosts {
		if h.Name == "" {
			continue // a "." among real MX records is ignored
		}
		addrs, err := r.Addrs(ctx, h.Name)
		if err != nil && firstErr == nil {
			firstErr = err
		}
		if len(addrs) > MaxAddrsPerHost {
			addrs = addrs[:MaxAddrsPerHost]
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

// Addrs returns the IPv4 then IPv6 addresses of host (host itself when it
// is an IP literal).
func (r *Resolver) Addrs(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, nil
	}
	var addrs []netip.Addr
	var lastErr error
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		resp, err := r.Query(ctx, host, qtype)
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

// TXT returns the TXT records of name, each with its strings joined.
func (r *Resolver) TXT(ctx context.Context, name string) ([]string, error) {
	resp, err := r.Query(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range resp.Answer {
		if t, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(t.Txt, ""))
		}
	}
	return out, nil
}
