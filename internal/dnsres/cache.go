package dnsres

import (
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Answers are kept for their TTL, so that a burst of mail to one domain
// asks the resolver once per TTL for its MX, addresses, TLSA records and
// MTA-STS record, not once per message. Only positive answers are kept
// (NXDOMAIN, SERVFAIL and empty answers are asked again next time), for
// at most maxCacheTTL, and at most maxCacheEntries of them.
const (
	maxCacheTTL     = time.Hour
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
	if m.Rcode != dns.RcodeSuccess || len(m.Answer) == 0 {
		return
	}
	ttl := maxCacheTTL
	for _, rr := range m.Answer {
		ttl = min(ttl, time.Duration(rr.Header().Ttl)*time.Second)
	}
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
