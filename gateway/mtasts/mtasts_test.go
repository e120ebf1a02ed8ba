package mtasts

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/dnsres"
	"github.com/sealgate/sealgate/internal/testutil"
	"github.com/sealgate/sealgate/policy"
	"github.com/sealgate/sealgate/queue"
)

const (
	wellKnown     = "/.well-known/mta-sts.txt"
	enforcePolicy = "version: STSv1\r\nmode: enforce\r\nmx: mx.dest.test\r\nmx: *.backup.dest.test\r\nmax_age: 86400\r\n"
	testingPolicy = "version: STSv1\r\nmode: testing\r\nmx: mx2.dest.test\r\nmax_age: 86400\r\n"
)

// serveHTTPS serves h as https://mta-sts.<domain>:port on 127.0.0.1 with a
// certificate for certName from ca, publishes the A record and returns the
// port.
func serveHTTPS(t *testing.T, dns *testutil.DNSServer, ca *testutil.CA, domain, certName string, h http.Handler) int {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, certName)}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes the client refuses
	srv.StartTLS()
	t.Cleanup(srv.Close)
	dns.AddA("mta-sts."+domain, "127.0.0.1")
	return srv.Listener.Addr().(*net.TCPAddr).Port
}

// newResolver trusts only ca, as the gateway trusts its roots.
func newResolver(t *testing.T, dns *testutil.DNSServer, ca *testutil.CA, port int, cache Cache) *Resolver {
	t.Helper()
	r, err := dnsres.New(dns.Addr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return New(cache, r, r.HTTPSClient(ca.Pool(), 5*time.Second), port, nil)
}

// policyHost is a policy server whose answer the test changes as it goes,
// counting the fetches it gets.
type policyHost struct {
	port int
	mu   sync.Mutex
	body string // "" answers 503
	hits int
}

func newPolicyHost(t *testing.T, dns *testutil.DNSServer, ca *testutil.CA, domain, body string) *policyHost {
	h := &policyHost{body: body}
	h.port = serveHTTPS(t, dns, ca, domain, "mta-sts."+domain, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.hits++
		body := h.body
		h.mu.Unlock()
		if r.URL.Path != wellKnown {
			http.NotFound(w, r)
			return
		}
		if body == "" {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, body)
	}))
	return h
}

func (h *policyHost) serve(body string) { h.mu.Lock(); defer h.mu.Unlock(); h.body = body }
func (h *policyHost) fetches() int      { h.mu.Lock(); defer h.mu.Unlock(); return h.hits }

// memCache is the spool's MTA-STS cache in memory.
type memCache struct {
	mu sync.Mutex
	m  map[string]queue.MTASTSEntry
}

func (c *memCache) MTASTS(domain string) (*queue.MTASTSEntry, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[domain]
	if !ok {
		return nil, nil
	}
	return &e, nil
}

func (c *memCache) PutMTASTS(e queue.MTASTSEntry) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]queue.MTASTSEntry{}
	}
	c.m[e.Domain] = e
	return nil
}

func TestDiscover(t *testing.T) {
	dns := testutil.NewDNSServer(t)
	dns.AddTXT("_mta-sts.one.test", "v=STSv1; id=abc")
	dns.AddTXT("_mta-sts.split.test", "v=STSv1; ", "id=20260101T000000;")
	dns.AddTXT("_mta-sts.two.test", "v=STSv1; id=abc")
	dns.AddTXT("_mta-sts.two.test", "v=STSv1; id=def")
	dns.AddTXT("_mta-sts.mixed.test", "v=spf1 -all")
	dns.AddTXT("_mta-sts.mixed.test", "v=STSv1; id=abc")
	dns.AddTXT("_mta-sts.mixed.test", "some verification token")
	dns.AddTXT("_mta-sts.other.test", "v=spf1 -all")
	dns.AddTXT("_mta-sts.noid.test", "v=STSv1;")
	dns.AddTXT("_mta-sts.oneinvalid.test", "v=STSv1; id=abc")
	dns.AddTXT("_mta-sts.oneinvalid.test", "v=STSv1; id=")
	r := newResolver(t, dns, testutil.NewCA(t), 443, nil)

	for _, tc := range []struct{ domain, want string }{
		{"none.test", ""},                 // no record at all (NXDOMAIN)
		{"one.test", "abc"},               // the usual case
		{"split.test", "20260101T000000"}, // one record in two strings
		{"two.test", ""},                  // RFC 8461 §3.1: several records mean none
		{"mixed.test", "abc"},             // other TXT records at the name are ignored
		{"other.test", ""},                // only a record that is not STSv1
		{"noid.test", ""},                 // syntactically invalid
		{"oneinvalid.test", ""},           // §3.1: two STSv1 records, even if one is invalid
	} {
		id, err := r.Discover(t.Context(), tc.domain)
		if err != nil || id != tc.want {
			t.Errorf("Discover(%s) = %q, %v; want %q", tc.domain, id, err, tc.want)
		}
	}

	// DNS trouble is an error, not "no policy".
	dns.SetServfail("_mta-sts.one.test")
	if id, err := r.Discover(t.Context(), "one.test"); err == nil || id != "" {
		t.Errorf("Discover with SERVFAIL = %q, %v; want an error", id, err)
	}
}

func TestFetchGoodPolicy(t *testing.T) {
	dns := testutil.NewDNSServer(t)
	ca := testutil.NewCA(t)
	host := newPolicyHost(t, dns, ca, "dest.test", enforcePolicy)
	r := newResolver(t, dns, ca, host.port, nil)

	body, p, err := r.Fetch(t.Context(), "dest.test")
	if err != nil {
		t.Fatal(err)
	}
	if string(body) != enforcePolicy {
		t.Errorf("body %q, want what was served", body)
	}
	if p.Mode != policy.MTASTSEnforce || !slices.Equal(p.MX, []string{"mx.dest.test", "*.backup.dest.test"}) || p.MaxAge != 24*time.Hour {
		t.Errorf("policy %+v", p)
	}

	// The size limit is 64 KiB exactly: a policy padded to it still parses.
	host.serve(enforcePolicy + strings.Repeat("\n", maxPolicyBytes-len(enforcePolicy)))
	if body, p, err := r.Fetch(t.Context(), "dest.test"); err != nil || len(body) != 64<<10 || p.Mode != policy.MTASTSEnforce {
		t.Errorf("64 KiB policy: %d bytes, %+v, %v", len(body), p, err)
	}
}

func TestFetchRefusals(t *testing.T) {
	dns := testutil.NewDNSServer(t)
	ca := testutil.NewCA(t)
	good := func(w http.ResponseWriter, body string) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, body)
	}

	for _, tc := range []struct {
		name    string
		certCA  *testutil.CA // nil: the trusted one
		cert    string       // "": mta-sts.<domain>
		handler func(w http.ResponseWriter, r *http.Request)
		check   func(t *testing.T, err error)
	}{{
		name: "html",
		handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, enforcePolicy)
		},
		check: wantErrContaining(`content type "text/html"`),
	}, {
		name: "no-content-type",
		handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Content-Type"] = nil // no sniffing either
			io.WriteString(w, enforcePolicy)
		},
		check: wantErrContaining(`content type ""`),
	}, {
		name: "too-big",
		handler: func(w http.ResponseWriter, r *http.Request) {
			good(w, enforcePolicy+strings.Repeat("\n", maxPolicyBytes+1-len(enforcePolicy)))
		},
		check: wantErrContaining("larger than 65536 bytes"),
	}, {
		name:    "not-found",
		handler: http.NotFound, // text/plain, as a policy would be
		check:   wantErrContaining("404"),
	}, {
		name: "bad-policy",
		handler: func(w http.ResponseWriter, r *http.Request) {
			good(w, "version: STSv1\nmode: strict\nmx: mx.dest.test\nmax_age: 60\n")
		},
		check: func(t *testing.T, err error) {
			if !errors.Is(err, policy.ErrBadMTASTSPolicy) {
				t.Errorf("err %v, want a bad policy", err)
			}
		},
	}, {
		name:    "untrusted-ca",
		certCA:  testutil.NewCA(t),
		handler: func(w http.ResponseWriter, r *http.Request) { good(w, enforcePolicy) },
		check: func(t *testing.T, err error) {
			var unknown x509.UnknownAuthorityError
			if !errors.As(err, &unknown) {
				t.Errorf("err %v, want an unknown authority", err)
			}
		},
	}, {
		name:    "wrong-name",
		cert:    "www.wrong-name.test",
		handler: func(w http.ResponseWriter, r *http.Request) { good(w, enforcePolicy) },
		check: func(t *testing.T, err error) {
			var wrong x509.HostnameError
			if !errors.As(err, &wrong) {
				t.Errorf("err %v, want a certificate for another name", err)
			}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			domain := tc.name + ".test"
			certCA, cert := ca, "mta-sts."+domain
			if tc.certCA != nil {
				certCA = tc.certCA
			}
			if tc.cert != "" {
				cert = tc.cert
			}
			port := serveHTTPS(t, dns, certCA, domain, cert, http.HandlerFunc(tc.handler))
			body, p, err := newResolver(t, dns, ca, port, nil).Fetch(t.Context(), domain)
			if body != nil || p != nil {
				t.Errorf("refused fetch returned %q, %+v", body, p)
			}
			tc.check(t, err)
		})
	}
}

func wantErrContaining(s string) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), s) {
			t.Errorf("err %v, want one saying %q", err, s)
		}
	}
}

// TestFetchDoesNotFollowRedirects: RFC 8461 §3.3, "HTTP 3xx redirects
// MUST NOT be followed". The target serves a good policy and is never
// asked for it.
func TestFetchDoesNotFollowRedirects(t *testing.T) {
	dns := testutil.NewDNSServer(t)
	ca := testutil.NewCA(t)
	var mu sync.Mutex
	hits := map[string]int{}
	port := serveHTTPS(t, dns, ca, "dest.test", "mta-sts.dest.test", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits[r.URL.Path]++
		mu.Unlock()
		if r.URL.Path == wellKnown {
			http.Redirect(w, r, "/moved.txt", http.StatusFound)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, enforcePolicy)
	}))
	r := newResolver(t, dns, ca, port, nil)

	body, p, err := r.Fetch(t.Context(), "dest.test")
	if err == nil || body != nil || p != nil {
		t.Errorf("redirect followed: %q, %+v, %v", body, p, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if hits[wellKnown] != 1 || hits["/moved.txt"] != 0 {
		t.Errorf("requests by path %v, want only the well-known one", hits)
	}
}

// stsFixture is dest.test with an MTA-STS record, a policy host, a cache
// and a clock the test moves.
type stsFixture struct {
	t     *testing.T
	dns   *testutil.DNSServer
	host  *policyHost
	cache *memCache
	r     *Resolver
	start time.Time
	clock time.Time
}

func newSTSFixture(t *testing.T) *stsFixture {
	dns := testutil.NewDNSServer(t)
	ca := testutil.NewCA(t)
	f := &stsFixture{t: t, dns: dns, host: newPolicyHost(t, dns, ca, "dest.test", enforcePolicy), cache: &memCache{}}
	dns.AddTXT("_mta-sts.dest.test", "v=STSv1; id=1")
	f.r = newResolver(t, dns, ca, f.host.port, f.cache)
	f.start = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f.clock = f.start
	f.r.now = func() time.Time { return f.clock }
	return f
}

// policyAt moves the clock to start+d and asks for dest.test's policy.
func (f *stsFixture) policyAt(d time.Duration) *policy.MTASTSPolicy {
	f.clock = f.start.Add(d)
	return f.r.PolicyFor(f.t.Context(), "dest.test")
}

func (f *stsFixture) cached(t *testing.T) queue.MTASTSEntry {
	t.Helper()
	e, _ := f.cache.MTASTS("dest.test")
	if e == nil {
		t.Fatal("nothing cached for dest.test")
	}
	return *e
}

func mode(p *policy.MTASTSPolicy) string {
	if p == nil {
		return "no policy"
	}
	return string(p.Mode)
}

func TestPolicyForFetchesOnceAndRefreshesAtHalfLife(t *testing.T) {
	f := newSTSFixture(t)

	// First call: fetched, and cached until now + max_age.
	if p := f.policyAt(0); mode(p) != "enforce" || !slices.Equal(p.MX, []string{"mx.dest.test", "*.backup.dest.test"}) {
		t.Fatalf("first call: %+v", p)
	}
	if n := f.host.fetches(); n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}
	e := f.cached(t)
	if e.Domain != "dest.test" || e.ID != "1" || string(e.Body) != enforcePolicy || !e.FetchedAt.Equal(f.start) || !e.Expires.Equal(f.start.Add(24*time.Hour)) {
		t.Errorf("cached %+v", e)
	}

	// Same id, short of half of max_age (12h): served from the cache.
	f.host.serve(testingPolicy) // would show if it were fetched
	for _, d := range []time.Duration{time.Minute, 6 * time.Hour, 12*time.Hour - time.Second} {
		if p := f.policyAt(d); mode(p) != "enforce" {
			t.Errorf("at +%v: %s, want the cached enforce", d, mode(p))
		}
	}
	if n := f.host.fetches(); n != 1 {
		t.Errorf("%d fetches within half the max_age, want 1", n)
	}

	// Half of max_age passed: fetched again, cached anew.
	if p := f.policyAt(12 * time.Hour); mode(p) != "testing" {
		t.Errorf("at half-life: %s, want the refreshed testing", mode(p))
	}
	if n := f.host.fetches(); n != 2 {
		t.Errorf("%d fetches after half the max_age, want 2", n)
	}
	if e := f.cached(t); !e.FetchedAt.Equal(f.start.Add(12*time.Hour)) || string(e.Body) != testingPolicy {
		t.Errorf("cached after refresh %+v", e)
	}
}

func TestPolicyForFetchesWhenIDChanges(t *testing.T) {
	f := newSTSFixture(t)
	if p := f.policyAt(0); mode(p) != "enforce" {
		t.Fatalf("first call: %s", mode(p))
	}

	f.dns.ReplaceTXT("_mta-sts.dest.test", "v=STSv1; id=2")
	f.host.serve(testingPolicy)
	if p := f.policyAt(time.Minute); mode(p) != "testing" {
		t.Errorf("after the id changed: %s, want the new testing policy", mode(p))
	}
	if n := f.host.fetches(); n != 2 {
		t.Errorf("%d fetches, want 2", n)
	}
	if e := f.cached(t); e.ID != "2" || string(e.Body) != testingPolicy {
		t.Errorf("cached %+v", e)
	}
	// And the new id is now the one that spares fetches.
	if p := f.policyAt(2 * time.Minute); mode(p) != "testing" || f.host.fetches() != 2 {
		t.Errorf("same new id again: %s after %d fetches", mode(p), f.host.fetches())
	}
}

// TestPolicyForKeepsCachedPolicy: RFC 8461 §5.1, a cached policy applies
// until it expires whatever happens to the record or the policy host.
func TestPolicyForKeepsCachedPolicy(t *testing.T) {
	f := newSTSFixture(t)
	if p := f.policyAt(0); mode(p) != "enforce" {
		t.Fatalf("first call: %s", mode(p))
	}

	// The record disappears (only an unrelated TXT record is left).
	f.dns.ReplaceTXT("_mta-sts.dest.test", "v=spf1 -all")
	if p := f.policyAt(time.Hour); mode(p) != "enforce" {
		t.Errorf("record gone: %s, want the cached enforce", mode(p))
	}
	// DNS fails.
	f.dns.SetServfail("_mta-sts.dest.test")
	if p := f.policyAt(2 * time.Hour); mode(p) != "enforce" {
		t.Errorf("DNS failing: %s, want the cached enforce", mode(p))
	}
	f.dns.ClearServfail("_mta-sts.dest.test")
	if n := f.host.fetches(); n != 1 {
		t.Errorf("%d fetches without a record, want 1", n)
	}

	// A new id, and the policy host fails: tried, and the cached policy stays.
	f.dns.ReplaceTXT("_mta-sts.dest.test", "v=STSv1; id=2")
	f.host.serve("")
	if p := f.policyAt(3 * time.Hour); mode(p) != "enforce" {
		t.Errorf("fetch failing: %s, want the cached enforce", mode(p))
	}
	// Same past half-life, just short of expiry.
	if p := f.policyAt(24*time.Hour - time.Second); mode(p) != "enforce" {
		t.Errorf("fetch failing just before expiry: %s, want the cached enforce", mode(p))
	}
	if n := f.host.fetches(); n != 3 {
		t.Errorf("%d fetches, want 3", n)
	}
	if e := f.cached(t); e.ID != "1" || !e.FetchedAt.Equal(f.start) {
		t.Errorf("a failed fetch changed the cache: %+v", e)
	}
}

func TestPolicyForExpiredPolicyIsGone(t *testing.T) {
	f := newSTSFixture(t)
	if p := f.policyAt(0); mode(p) != "enforce" {
		t.Fatalf("first call: %s", mode(p))
	}

	f.host.serve("")
	if p := f.policyAt(24 * time.Hour); p != nil {
		t.Errorf("expired, fetch failing: %s, want no policy", mode(p))
	}
	if n := f.host.fetches(); n != 2 {
		t.Errorf("%d fetches, want 2", n)
	}
	f.dns.ReplaceTXT("_mta-sts.dest.test", "v=spf1 -all")
	if p := f.policyAt(25 * time.Hour); p != nil {
		t.Errorf("expired, no record: %s, want no policy", mode(p))
	}
}

func TestPolicyForWithoutCache(t *testing.T) {
	dns := testutil.NewDNSServer(t)
	ca := testutil.NewCA(t)
	host := newPolicyHost(t, dns, ca, "dest.test", enforcePolicy)
	dns.AddTXT("_mta-sts.dest.test", "v=STSv1; id=1")
	r := newResolver(t, dns, ca, host.port, nil)

	if p := r.PolicyFor(t.Context(), "dest.test"); p != nil {
		t.Errorf("without a cache: %+v, want nil", p)
	}
	if n := host.fetches(); n != 0 {
		t.Errorf("%d fetches without a cache, want 0", n)
	}
}
