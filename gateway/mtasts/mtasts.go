package mtasts

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sealgate/sealgate/internal/dnsres"
	"github.com/sealgate/sealgate/policy"
	"github.com/sealgate/sealgate/queue"
)

const (
	// maxPolicyBytes bounds a policy fetch: real policies are a few
	// hundred bytes; RFC 8461 §3.3 lets clients limit the size.
	maxPolicyBytes = 64 << 10
	// FetchTimeout bounds a fetch (RFC 8461 §3.3 suggests no more than
	// a minute or so): the timeout of the client given to New.
	FetchTimeout = 30 * time.Second
)

// Cache is what the resolver needs from the spool.
type Cache interface {
	MTASTS(domain string) (*queue.MTASTSEntry, error)
	PutMTASTS(e queue.MTASTSEntry) error
}

// Resolver finds the MTA-STS policy in force for a domain.
type Resolver struct {
	cache    Cache
	resolver *dnsres.Resolver
	client   *http.Client
	port     int
	now      func() time.Time
	logger   *slog.Logger
}

// New returns a resolver that caches policies in cache (nil: no cache,
// for probes that only Discover and Fetch), looks records up through r
// and fetches policies with client (dnsres.Resolver.HTTPSClient: it must
// not follow redirects) on port (443 but in tests).
func New(cache Cache, r *dnsres.Resolver, client *http.Client, port int, logger *slog.Logger) *Resolver {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Resolver{cache: cache, resolver: r, client: client, port: port, now: time.Now, logger: logger}
}

// PolicyFor returns the policy in force for domain, or nil when there is
// none. Failures to refresh fall back to a cached policy that has not
// expired; only when there is neither does delivery go on without one.
func (m *Resolver) PolicyFor(ctx context.Context, domain string) *policy.MTASTSPolicy {
	now := m.now()
	if m.cache == nil {
		return nil
	}
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

	id, err := m.Discover(ctx, domain)
	if err != nil || id == "" {
		// No record (or DNS trouble): a cached policy still applies
		// until it expires (RFC 8461 §5.1).
		return valid
	}
	// Same id and not past half of its lifetime: no need to fetch.
	if valid != nil && cached.ID == id && now.Before(cached.FetchedAt.Add(cached.Expires.Sub(cached.FetchedAt)/2)) {
		return valid
	}
	body, p, err := m.Fetch(ctx, domain)
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

// Discover reads _mta-sts.<domain>: the id of its single STSv1 record,
// "" when there is none (RFC 8461 §3.1: several records mean none).
func (m *Resolver) Discover(ctx context.Context, domain string) (string, error) {
	txts, err := m.resolver.TXT(ctx, "_mta-sts."+domain)
	if err != nil {
		return "", err
	}
	// Records are counted before they are parsed: an invalid STSv1
	// record next to a valid one still makes two.
	var records []string
	for _, t := range txts {
		if strings.HasPrefix(t, "v=STSv1") {
			records = append(records, t)
		}
	}
	if len(records) != 1 {
		return "", nil
	}
	id, err := policy.ParseMTASTSRecord(records[0])
	if err != nil {
		m.logger.Warn("bad MTA-STS record", "domain", domain, "err", err)
		return "", nil
	}
	return id, nil
}

// Fetch gets and parses https://mta-sts.<domain>/.well-known/mta-sts.txt.
func (m *Resolver) Fetch(ctx context.Context, domain string) ([]byte, *policy.MTASTSPolicy, error) {
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
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPolicyBytes+1))
	if err != nil {
		return nil, nil, err
	}
	if len(body) > maxPolicyBytes {
		return nil, nil, fmt.Errorf("policy larger than %d bytes", maxPolicyBytes)
	}
	p, err := policy.ParseMTASTS(body)
	if err != nil {
		return nil, nil, err
	}
	return body, p, nil
}
