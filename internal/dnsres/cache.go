package dnsres

import (
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Answers are kept for their TTL, so that a burst of mail to one domain
// asks the resolver once per TTL for its MX, addresses, TLSA records and
// MTA-STS record, not once per message. Negative answers (NXDOMAIN, and
// NODATA: no record of the type) are kept as RFC 2308 says, for the
// lesser of their SOA's TTL and its MINIMUM field, and at most
// maxNegativeTTL: most destinations publish no MTA-STS or TLSA record,
// and without it every delivery to them asked again. A negative answer
// without an SOA, and SERVFAIL, are asked again next time. Positive
// answers are kept for at most maxCacheTTL; at most maxCacheEntries
// answers in all.
const (
	maxCacheTTL     = time.Hour
	maxNegativeTTL  = 15 * time.Minute
	maxCacheEntries = 10000
)

type cacheKey struct {
	name  string
	qtype uint16
}

type cacheEntry struct {
	msg     *dns.Msg
	expires time.Time
}

type answerCache struct {
	mu      sync.Mutex
	entries map[cacheKey]cacheEntry
	now     func() time.Time
}

func newAnswerCache() *answerCache {
	return &answerCache{entries: map[cacheKey]cacheEntry{}, now: time.Now}
}

func (c *answerCache) get(name string, qtype uint16) *dns.Msg {
	k := cacheKey{strings.ToLower(dns.Fqdn(name)), qtype}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok {
		return nil
	}
	if !c.now().Before(e.expires) {
		delete(c.entries, k)
		return nil
	}
	return e.msg.Copy()
}

func (c *answerCache) put(name string, qtype uint16, m *dns.Msg) {
	ttl := cacheTTL(m)
	if ttl <= 0 {
		return
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= maxCacheEntries {
		for k, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= maxCacheEntries {
			clear(c.entries)
		}
	}
	c.entries[cacheKey{strings.ToLower(dns.Fqdn(name)), qtype}] = cacheEntry{msg: m.Copy(), expires: now.Add(ttl)}
}

// cacheTTL is how long m may be kept: 0 for not at all.
func cacheTTL(m *dns.Msg) time.Duration {
	switch {
	case m.Rcode == dns.RcodeSuccess && len(m.Answer) > 0:
		ttl := maxCacheTTL
		for _, rr := range m.Answer {
			ttl = min(ttl, time.Duration(rr.Header().Ttl)*time.Second)
		}
		return ttl
	case m.Rcode == dns.RcodeSuccess, m.Rcode == dns.RcodeNameError:
		for _, rr := range m.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				return min(maxNegativeTTL, time.Duration(min(soa.Hdr.Ttl, soa.Minttl))*time.Second)
			}
		}
	}
	return 0
}
