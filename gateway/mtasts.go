package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sealgate/sealgate/policy"
	"github.com/sealgate/sealgate/queue"
)

// MTA-STS discovery, fetch and cache (RFC 8461 §3, §5). Parsing and MX
// matching are in package policy; this file does the I/O.

const (
	// maxMTASTSBody bounds a policy fetch: real policies are a few
	// hundred bytes; RFC 8461 §3.3 lets clients limit the size.
	maxMTASTSBody = 64 << 10
	// mtastsFetchTimeout bounds a fetch (RFC 8461 §3.3 suggests a
	// timeout of no more than a minute or so).
	mtastsFetchTimeout = 30 * time.Second
)

// mtastsCache is what the resolver needs from the spool.
type mtastsCache interface {
	MTASTS(domain string) (*queue.MTASTSEntry, error)
	PutMTASTS(e queue.MTASTSEntry) error
}

// mtastsResolver finds the MTA-STS policy in force for a domain.
type mtastsResolver struct {
	cache    mtastsCache
	resolver *mxResolver
	client   *http.Client
	port     int
	now      func() time.Time
	logger   *slog.Logger
}

func newMTASTSResolver(cache mtastsCache, r *mxResolver, roots *x509.CertPool, port int, logger *slog.Logger) *mtastsResolver {
	m := &mtastsResolver{cache: cache, resolver: r, port: port, now: time.Now, logger: logger}
	transport := &http.Transport{
		TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		DialContext:           m.dial,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: mtastsFetchTimeout,
		DisableKeepAlives:     true,
		Proxy:                 nil,
	}
	m.client = &http.Client{
		Transport: transport,
		Timeout:   mtastsFetchTimeout,
		// RFC 8461 §3.3: HTTP redirects MUST NOT be followed.
		CheckRedirect: func(*http.Request, []*http.Request) error { return errors.New("redirects are not followed") },
	}
	return m
}

// dial resolves the policy host through the configured DNS server, like
// everything else outbound, not through the system's.
func (m *mtastsResolver) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	addrs, err := m.resolver.lookupAddrs(ctx, host)
	if err != nil {
		return nil, err
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("no address for %s", host)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, net.JoinHostPort(addrs[0].String(), port))
}

// policyFor returns the policy in force for domain, or nil when there is
// none. Failures to refresh fall back to a cached policy that has not
// expired; only when there is neither does delivery go on without one.
func (m *mtastsResolver) policyFor(ctx context.Context, domain string) *policy.MTASTSPolicy {
	now := m.now()
	cached, err := m.cache.MTASTS(domain)
	if err != nil {
		m.logger.Error("MTA-STS cache unreadable", "domain", domain, "err", err)
	}
	var valid *policy.MTASTSPolicy
	if cached != nil && now.Before(cached.Expires) {
		if p, err := policy.ParseMTASTS(cached.Body); err == nil {
			valid = p
		}
	}

	id, err := m.discover(ctx, domain)
	if err != nil || id == "" {
		// No record (or DNS trouble): a cached policy still applies
		// until it expires (RFC 8461 §5.1).
		return valid
	}
	// Same id and not past half of its lifetime: no need to fetch.
	if valid != nil && cached.ID == id && now.Before(cached.FetchedAt.Add(cached.Expires.Sub(cached.FetchedAt)/2)) {
		return valid
	}
	body, p, err := m.fetch(ctx, domain)
	if err != nil {
		m.logger.Warn("MTA-STS policy fetch failed", "domain", domain, "err", err, "using_cached", valid != nil)
		return valid
	}
	entry := queue.MTASTSEntry{Domain: domain, ID: id, Body: body, FetchedAt: now, Expires: now.Add(p.MaxAge)}
	if err := m.cache.PutMTASTS(entry); err != nil {
		m.logger.Error("MTA-STS cache write failed", "domain", domain, "err", err)
	}
	return p
}

// discover reads _mta-sts.<domain>: the id of its single STSv1 record,
// "" when there is none (RFC 8461 §3.1: several records mean none).
func (m *mtastsResolver) discover(ctx context.Context, domain string) (string, error) {
	txts, err := m.resolver.lookupTXT(ctx, "_mta-sts."+domain)
	if err != nil {
		return "", err
	}
	var ids []string
	for _, t := range txts {
		if !strings.HasPrefix(t, "v=STSv1") {
			continue
		}
		id, err := policy.ParseMTASTSRecord(t)
		if err != nil {
			m.logger.Warn("bad MTA-STS record", "domain", domain, "err", err)
			continue
		}
		ids = append(ids, id)
	}
	if len(ids) != 1 {
		return "", nil
	}
	return ids[0], nil
}

// fetch gets and parses https://mta-sts.<domain>/.well-known/mta-sts.txt.
func (m *mtastsResolver) fetch(ctx context.Context, domain string) ([]byte, *policy.MTASTSPolicy, error) {
	host := "mta-sts." + domain
	if m.port != 443 {
		host += ":" + strconv.Itoa(m.port)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+"/.well-known/mta-sts.txt", nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := m.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("HTTP %s", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(strings.ToLower(ct), "text/plain") {
		return nil, nil, fmt.Errorf("content type %q, want text/plain", ct)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxMTASTSBody+1))
	if err != nil {
		return nil, nil, err
	}
	if len(body) > maxMTASTSBody {
		return nil, nil, fmt.Errorf("policy larger than %d bytes", maxMTASTSBody)
	}
	p, err := policy.ParseMTASTS(body)
	if err != nil {
		return nil, nil, err
	}
	return body, p, nil
}
