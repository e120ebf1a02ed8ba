package dnsres

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testutil"
)

func TestLookupMX(t *testing.T) {
	dns := testutil.NewDNSServer(t)
	r, err := New(dns.Addr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	dns.AddMX("multi.test", "b.multi.test", 20)
	dns.AddMX("multi.test", "a1.multi.test", 10)
	dns.AddMX("multi.test", "a2.multi.test", 10)
	for i, h := range []string{"a1", "a2", "b"} {
		dns.AddA(h+".multi.test", fmt.Sprintf("127.0.0.%d", i+2))
	}
	dns.AddAAAA("b.multi.test", "::1")
	firsts := map[string]bool{}
	for range 40 {
		hosts, err := r.MX(ctx, "multi.test")
		if err != nil {
			t.Fatal(err)
		}
		if len(hosts) != 3 || hosts[2].Name != "b.multi.test" || len(hosts[2].Addrs) != 2 {
			t.Fatalf("hosts %+v", hosts)
		}
		firsts[hosts[0].Name] = true
	}
	if !firsts["a1.multi.test"] || !firsts["a2.multi.test"] {
		t.Errorf("equal preferences not randomised: first hosts seen %v", firsts)
	}

	dns.AddA("implicit.test", "127.0.0.9")
	if hosts, err := r.MX(ctx, "implicit.test"); err != nil || hosts[0].Name != "implicit.test" {
		t.Errorf("implicit MX: %+v, %v", hosts, err)
	}

	dns.AddNullMX("null.test")
	dns.SetServfail("servfail.test")
	dns.SetDrop("silent.test")
	slow, _ := New(dns.Addr(), 200*time.Millisecond)
	for _, tc := range []struct {
		domain    string
		temporary bool
		status    string
	}{
		{"null.test", false, "5.1.10"},
		{"nonexistent.test", false, "5.1.2"},
		{"servfail.test", true, "4.4.3"},
		{"silent.test", true, "4.4.3"},
	} {
		_, err := slow.MX(ctx, tc.domain)
		var de *Error
		if !errors.As(err, &de) || de.Temporary != tc.temporary || de.Status != tc.status {
			t.Errorf("lookupMX(%s) = %v, want temporary=%v status %s", tc.domain, err, tc.temporary, tc.status)
		}
	}
}

func TestLookupMXBoundsHostsAndAddresses(t *testing.T) {
	dns := testutil.NewDNSServer(t)
	for i := range 30 {
		host := fmt.Sprintf("mx%d.many.test", i)
		dns.AddMX("many.test", host, uint16(i))
		for j := range 10 {
			dns.AddA(host, fmt.Sprintf("127.0.%d.%d", i+1, j+1))
		}
	}
	r, _ := New(dns.Addr(), 2*time.Second)
	hosts, err := r.MX(context.Background(), "many.test")
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != MaxMXHosts || hosts[0].Name != "mx0.many.test" {
		t.Errorf("%d hosts, first %s; want the %d most preferred", len(hosts), hosts[0].Name, MaxMXHosts)
	}
	for _, h := range hosts {
		if len(h.Addrs) > MaxAddrsPerHost {
			t.Errorf("%s: %d addresses", h.Name, len(h.Addrs))
		}
	}
}

// TestAnswersAreCachedForTheirTTL: a burst of lookups asks the server
// once while the answer's TTL lasts, and again once it has passed; an
// answer with TTL 0 and a failure are never kept.
func TestAnswersAreCachedForTheirTTL(t *testing.T) {
	srv := testutil.NewDNSServer(t)
	srv.AddMX("cached.test", "mx.cached.test", 10)
	srv.AddA("mx.cached.test", "127.0.0.2")
	srv.SetTTL(60)
	r, err := New(srv.Addr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r.cache.now = func() time.Time { return now }
	ctx := context.Background()
	for range 5 {
		if hosts, err := r.MX(ctx, "cached.test"); err != nil || len(hosts) != 1 {
			t.Fatalf("MX: %v %v", hosts, err)
		}
	}
	if n := srv.Queries("cached.test"); n != 1 {
		t.Errorf("%d MX queries within the TTL, want 1", n)
	}
	now = now.Add(61 * time.Second)
	r.MX(ctx, "cached.test")
	if n := srv.Queries("cached.test"); n != 2 {
		t.Errorf("%d MX queries after the TTL, want 2", n)
	}

	srv.SetTTL(0)
	srv.AddTXT("zero.test", "v=STSv1; id=1")
	r.TXT(ctx, "zero.test")
	r.TXT(ctx, "zero.test")
	if n := srv.Queries("zero.test"); n != 2 {
		t.Errorf("%d queries for a TTL-0 answer, want 2 (never cached)", n)
	}
	srv.SetServfail("fail.test")
	r.TXT(ctx, "fail.test")
	r.TXT(ctx, "fail.test")
	if n := srv.Queries("fail.test"); n != 2 {
		t.Errorf("%d queries for SERVFAIL, want 2", n)
	}
}

// Negative answers are kept as RFC 2308 says, for their SOA's TTL and at
// most maxNegativeTTL, so that a domain without MTA-STS or TLSA records
// is not asked again for every message; one without an SOA is not kept.
func TestNegativeAnswersAreCachedForTheirSOA(t *testing.T) {
	srv := testutil.NewDNSServer(t)
	srv.AddMX("known.test", "mx.known.test", 10)
	r, err := New(srv.Addr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r.cache.now = func() time.Time { return now }
	ctx := context.Background()
	ask := func(name string, times int) int {
		t.Helper()
		for range times {
			if txt, err := r.TXT(ctx, name); err != nil || len(txt) != 0 {
				t.Fatalf("TXT %s: %q %v", name, txt, err)
			}
		}
		return srv.Queries(name)
	}

	// Without an SOA in the answer: asked every time.
	if n := ask("_mta-sts.nosoa.test", 3); n != 3 {
		t.Errorf("%d queries for NXDOMAIN without an SOA, want 3", n)
	}

	srv.SetTTL(60)
	if n := ask("_mta-sts.none.test", 3); n != 1 {
		t.Errorf("%d queries for NXDOMAIN within its SOA's TTL, want 1", n)
	}
	if n := ask("known.test", 3); n != 1 { // NODATA: the name has only an MX
		t.Errorf("%d TXT queries for NODATA within its SOA's TTL, want 1", n)
	}
	now = now.Add(61 * time.Second)
	if n := ask("_mta-sts.none.test", 1); n != 2 {
		t.Errorf("%d queries after the SOA's TTL, want 2", n)
	}

	srv.SetTTL(86400)
	ask("_mta-sts.long.test", 2)
	now = now.Add(maxNegativeTTL + time.Second)
	if n := ask("_mta-sts.long.test", 1); n != 2 {
		t.Errorf("%d queries %s after a day-long negative answer, want 2 (kept at most %s)", n, maxNegativeTTL+time.Second, maxNegativeTTL)
	}

	// A record published later is found once the negative answer ends.
	srv.SetTTL(60)
	ask("_mta-sts.later.test", 1)
	srv.AddTXT("_mta-sts.later.test", "v=STSv1; id=1")
	now = now.Add(61 * time.Second)
	if txt, err := r.TXT(ctx, "_mta-sts.later.test"); err != nil || len(txt) != 1 {
		t.Errorf("TXT after the negative answer ended: %q %v", txt, err)
	}
}
