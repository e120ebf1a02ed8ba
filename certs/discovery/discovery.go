package discovery

import (
	"context"
	"crypto/x509"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/internal/dnsres"
	"github.com/sealgate/sealgate/internal/netguard"
)

// DefaultTimeout bounds one source's lookup for one address (DNS
// included): a slow partner delays its own mail, not everyone's.
const DefaultTimeout = 10 * time.Second

// Options configure New. Resolver is required; Roots nil means the
// system roots; WKDPort 0 means 443; Timeout 0 means DefaultTimeout;
// nil Now and Logger take time.Now and a discarding logger.
type Options struct {
	Resolver *dnsres.Resolver
	Roots    *x509.CertPool
	// Which sources to ask (keys.discovery.wkd, .openpgpkey; SMIMEA for
	// DiscoverSMIME).
	WKD, OPENPGPKEY, SMIMEA bool
	// SMIMERoots is the S/MIME trust store that SMIMEA records of usage
	// PKIX-EE must chain to; nil trusts none of them.
	SMIMERoots *x509.CertPool
	// WKDPort is the HTTPS port of key directories (keys.wkd_port).
	WKDPort int
	// AllowedPrivateNetworks are the non-public networks a directory
	// host may resolve to and still be asked
	// (outbound.allowed_private_networks).
	AllowedPrivateNetworks []netip.Prefix
	Timeout                time.Duration
	// DomainFailureTTL is how long a directory host that could not be
	// reached (DNS failure, refused or timed-out connection, bad
	// certificate) is not asked again for any address of its domain
	// (keys.discovery.negative_ttl); 0 means 10 minutes.
	DomainFailureTTL time.Duration
	Now              func() time.Time
	Logger           *slog.Logger
}

// Discoverer asks the configured sources, in order WKD then OPENPGPKEY,
// and stops at the first that yields a usable key. It implements
// certs.OpenPGPDiscoverer and is safe for concurrent use.
type Discoverer struct {
	opts   Options
	client *http.Client

	mu   sync.Mutex
	down map[string]domainDown // WKD directories that could not be reached, by domain
}

type domainDown struct {
	why   string
	until time.Time
}

// maxDownDomains bounds the unreachable directories remembered.
const maxDownDomains = 10000

// New returns a discoverer.
func New(o Options) *Discoverer {
	if o.WKDPort == 0 {
		o.WKDPort = 443
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.DomainFailureTTL <= 0 {
		o.DomainFailureTTL = 10 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	allowed := o.AllowedPrivateNetworks
	guard := func(ip netip.Addr) error { return netguard.Refuse(ip, allowed) }
	return &Discoverer{opts: o, client: o.Resolver.GuardedHTTPSClient(o.Roots, o.Timeout, guard), down: map[string]domainDown{}}
}

// unreachable returns why domain's directory could not be reached, if
// that was less than DomainFailureTTL ago: a group of recipients at a
// partner whose directory is down waits for one timeout, not one each.
func (d *Discoverer) unreachable(domain string) (string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.down[domain]
	if !ok || !d.opts.Now().Before(e.until) {
		delete(d.down, domain)
		return "", false
	}
	return e.why, true
}

func (d *Discoverer) rememberUnreachable(domain, why string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.opts.Now()
	if len(d.down) >= maxDownDomains {
		for k, e := range d.down {
			if !now.Before(e.until) {
				delete(d.down, k)
			}
		}
		if len(d.down) >= maxDownDomains {
			clear(d.down)
		}
	}
	d.down[domain] = domainDown{why: why, until: now.Add(d.opts.DomainFailureTTL)}
}

// Uses reports whether keys found by source may be used: the source is
// switched on.
func (d *Discoverer) Uses(source string) bool {
	switch source {
	case certs.SourceWKD:
		return d.opts.WKD
	case certs.SourceOPENPGPKEY:
		return d.opts.OPENPGPKEY
	case certs.SourceSMIMEA:
		return d.opts.SMIMEA
	}
	return false
}

// DiscoverOpenPGP looks for address's OpenPGP keys.
func (d *Discoverer) DiscoverOpenPGP(ctx context.Context, address string) certs.Discovered {
	var found certs.Discovered
	local, domain, ok := splitAddress(address)
	if !ok {
		found.Tried = append(found.Tried, "not an address with a domain")
		return found
	}
	type source struct {
		on     bool
		name   string
		lookup func(context.Context, string, string, string) ([]certs.Key, time.Duration, string)
	}
	for _, s := range []source{
		{d.opts.WKD, certs.SourceWKD, d.wkd},
		{d.opts.OPENPGPKEY, certs.SourceOPENPGPKEY, d.openpgpkey},
	} {
		if !s.on {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
		keys, ttl, why := s.lookup(sctx, address, local, domain)
		cancel()
		if len(keys) > 0 {
			d.opts.Logger.Info("OpenPGP key discovered", "address", keys[0].Address, "source", s.name,
				"fingerprint", keys[0].Fingerprint, "algorithm", keys[0].Algorithm)
			found.Keys, found.TTL = keys, ttl
			return found
		}
		d.opts.Logger.Debug("OpenPGP key discovery found nothing", "address", address, "source", s.name, "why", why)
		found.Tried = append(found.Tried, why)
	}
	return found
}

// splitAddress splits an address at its last "@"; the domain is
// lower-cased (the spool's canonical form already is), the local part
// kept as written.
func splitAddress(address string) (local, domain string, ok bool) {
	at := strings.LastIndexByte(address, '@')
	if at <= 0 || at == len(address)-1 {
		return "", "", false
	}
	return address[:at], strings.ToLower(strings.TrimSuffix(address[at+1:], ".")), true
}

// refusal is the part of a certs error worth showing.
func refusal(err error) string {
	return strings.TrimPrefix(err.Error(), certs.ErrBadKey.Error()+": ")
}
