package discovery

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/internal/dnsres"
	"github.com/sealgate/sealgate/internal/testutil"
	"github.com/sealgate/sealgate/queue"
)

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

func TestHashesMatchTheSpecifications(t *testing.T) {
	// draft-koch-openpgp-webkey-service §3.1's example.
	if got := wkdURL("Joe.Doe", "example.org", true, 443); got != "https://openpgpkey.example.org/.well-known/openpgpkey/example.org/hu/iy9q119eutrkn8s1mk4r39qejnbu3n5q?l=Joe.Doe" {
		t.Errorf("advanced URL %s", got)
	}
	if got := wkdURL("Joe.Doe", "example.org", false, 8443); got != "https://example.org:8443/.well-known/openpgpkey/hu/iy9q119eutrkn8s1mk4r39qejnbu3n5q?l=Joe.Doe" {
		t.Errorf("direct URL %s", got)
	}
	// RFC 7929 §3's example.
	if got := openpgpkeyName("hugh", "example.com"); got != "c93f1e400f26708f98cb19d936620da35eec8f72e57f9eec01c1afd6._openpgpkey.example.com" {
		t.Errorf("OPENPGPKEY name %s", got)
	}
}

func newKey(t *testing.T, email string) (*openpgp.Entity, []byte) {
	t.Helper()
	e, err := openpgp.NewEntity("Someone", "", email, &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Time: func() time.Time { return testNow.Add(-time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := e.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	return e, buf.Bytes()
}

// wkdHost is a key directory on a loopback address with a certificate
// from the test CA, counting the requests it gets by path.
type wkdHost struct {
	srv      *httptest.Server
	mu       sync.Mutex
	keys     map[string][]byte // by path
	redirect map[string]bool   // by path
	hits     map[string]int    // by path
	seen     []string          // request URIs
}

func newWKDHost(t *testing.T, dns *testutil.DNSServer, ca *testutil.CA, ip string, port int, host string) *wkdHost {
	t.Helper()
	h := &wkdHost{keys: map[string][]byte{}, redirect: map[string]bool{}, hits: map[string]int{}}
	h.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.hits[r.URL.Path]++
		h.seen = append(h.seen, r.URL.RequestURI())
		if h.redirect[r.URL.Path] {
			http.Redirect(w, r, "https://elsewhere.test/", http.StatusFound)
			return
		}
		key, ok := h.keys[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(key)
	}))
	l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	h.srv.Listener.Close()
	h.srv.Listener = l
	h.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are what some tests want
	h.srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, host)}}
	h.srv.StartTLS()
	t.Cleanup(h.srv.Close)
	dns.AddA(host, ip)
	return h
}

func (h *wkdHost) publish(path string, key []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.keys[path] = key
}

func (h *wkdHost) hitCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, c := range h.hits {
		n += c
	}
	return n
}

type fixture struct {
	dns  *testutil.DNSServer
	ca   *testutil.CA
	port int
	res  *dnsres.Resolver
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{dns: testutil.NewDNSServer(t), ca: testutil.NewCA(t), port: testutil.FreePort(t)}
	var err error
	if f.res, err = dnsres.New(f.dns.Addr(), 2*time.Second); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) discoverer(o Options) *Discoverer {
	o.Resolver = f.res
	if o.Roots == nil {
		o.Roots = f.ca.Pool()
	}
	if o.WKDPort == 0 {
		o.WKDPort = f.port
	}
	if o.AllowedPrivateNetworks == nil {
		o.AllowedPrivateNetworks = loopback
	}
	o.Timeout = 3 * time.Second
	o.Now = func() time.Time { return testNow }
	return New(o)
}

func TestWKDAdvancedThenDirect(t *testing.T) {
	f := newFixture(t)
	bob, bobKey := newKey(t, "bob@adv.test")
	adv := newWKDHost(t, f.dns, f.ca, "127.0.0.8", f.port, "openpgpkey.adv.test")
	adv.publish("/.well-known/openpgpkey/adv.test/hu/"+wkdHash("bob"), bobKey)
	carol, carolKey := newKey(t, "carol@direct.test")
	direct := newWKDHost(t, f.dns, f.ca, "127.0.0.9", f.port, "direct.test")
	direct.publish("/.well-known/openpgpkey/hu/"+wkdHash("carol"), carolKey)
	d := f.discoverer(Options{WKD: true})
	ctx := context.Background()

	got := d.DiscoverOpenPGP(ctx, "Bob@adv.test")
	if len(got.Keys) != 1 || got.Keys[0].Fingerprint != fp(bob) || got.Keys[0].Source != certs.SourceWKD || got.Keys[0].Address != "bob@adv.test" {
		t.Fatalf("advanced method: %+v", got)
	}
	if adv.seen[0] != "/.well-known/openpgpkey/adv.test/hu/"+wkdHash("bob")+"?l=Bob" {
		t.Errorf("asked %s", adv.seen[0])
	}
	// No openpgpkey.direct.test in the DNS: the direct method.
	got = d.DiscoverOpenPGP(ctx, "carol@direct.test")
	if len(got.Keys) != 1 || got.Keys[0].Fingerprint != fp(carol) {
		t.Fatalf("direct method: %+v", got)
	}
	// The advanced host exists and has no key: no fallback to the direct
	// method (the draft falls back only when the host does not exist).
	direct.publish("/.well-known/openpgpkey/hu/"+wkdHash("dave"), carolKey)
	f.dns.AddA("adv.test", "127.0.0.9")
	got = d.DiscoverOpenPGP(ctx, "dave@adv.test")
	if len(got.Keys) != 0 || strings.Join(got.Tried, ", ") != "WKD 404 (advanced)" {
		t.Errorf("missing key: %+v", got)
	}
	if direct.hits["/.well-known/openpgpkey/hu/"+wkdHash("dave")] != 0 {
		t.Error("the direct method was asked although the advanced host exists")
	}
}

func TestWKDRefusesWhatItMustNotUse(t *testing.T) {
	f := newFixture(t)
	host := newWKDHost(t, f.dns, f.ca, "127.0.0.8", f.port, "openpgpkey.dest.test")
	_, malloryKey := newKey(t, "mallory@dest.test")
	host.publish("/.well-known/openpgpkey/dest.test/hu/"+wkdHash("bob"), malloryKey)
	ctx := context.Background()

	got := f.discoverer(Options{WKD: true}).DiscoverOpenPGP(ctx, "bob@dest.test")
	if len(got.Keys) != 0 || !strings.Contains(strings.Join(got.Tried, ""), "key refused: key") || !strings.Contains(strings.Join(got.Tried, ""), "no valid user ID for bob@dest.test") {
		t.Errorf("a key for another user ID: %+v", got)
	}

	_, bobKey := newKey(t, "bob@dest.test")
	host.publish("/.well-known/openpgpkey/dest.test/hu/"+wkdHash("bob"), bobKey)
	other := testutil.NewCA(t)
	got = f.discoverer(Options{WKD: true, Roots: other.Pool()}).DiscoverOpenPGP(ctx, "bob@dest.test")
	if len(got.Keys) != 0 || !strings.Contains(strings.Join(got.Tried, ""), "certificate") {
		t.Errorf("an untrusted certificate: %+v", got)
	}
	got = f.discoverer(Options{WKD: true, AllowedPrivateNetworks: []netip.Prefix{}}).DiscoverOpenPGP(ctx, "bob@dest.test")
	if len(got.Keys) != 0 || !strings.Contains(strings.Join(got.Tried, ""), "loopback address 127.0.0.8, not dialled") {
		t.Errorf("a directory on a loopback address not allowed: %+v", got)
	}
	if host.hitCount() != 1 { // the refused user ID; neither the untrusted nor the refused connection got a request through
		t.Errorf("%d requests reached the host", host.hitCount())
	}
	// Too big: refused, not read to the end.
	host.publish("/.well-known/openpgpkey/dest.test/hu/"+wkdHash("big"), make([]byte, 4*certs.MaxDiscoveredKeyBytes))
	got = f.discoverer(Options{WKD: true}).DiscoverOpenPGP(ctx, "big@dest.test")
	if len(got.Keys) != 0 || !strings.Contains(strings.Join(got.Tried, ""), "larger than") {
		t.Errorf("an oversized answer: %+v", got)
	}
}

func TestWKDDoesNotFollowRedirects(t *testing.T) {
	f := newFixture(t)
	host := newWKDHost(t, f.dns, f.ca, "127.0.0.9", f.port, "redirect.test")
	host.mu.Lock()
	host.redirect["/.well-known/openpgpkey/hu/"+wkdHash("bob")] = true
	host.mu.Unlock()
	got := f.discoverer(Options{WKD: true}).DiscoverOpenPGP(context.Background(), "bob@redirect.test")
	if len(got.Keys) != 0 || !strings.Contains(strings.Join(got.Tried, ""), "redirects are not followed") {
		t.Errorf("a redirect: %+v", got)
	}
}

func TestOPENPGPKEYNeedsAuthenticatedDNSSEC(t *testing.T) {
	f := newFixture(t)
	bob, bobKey := newKey(t, "bob@dest.test")
	f.dns.AddOPENPGPKEY(openpgpkeyName("bob", "dest.test"), bobKey)
	ctx := context.Background()

	f.res.DNSSECTrusted = true
	f.dns.SetAD(true)
	d := f.discoverer(Options{OPENPGPKEY: true})
	got := d.DiscoverOpenPGP(ctx, "bob@dest.test")
	if len(got.Keys) != 1 || got.Keys[0].Fingerprint != fp(bob) || got.Keys[0].Source != certs.SourceOPENPGPKEY || got.TTL != time.Minute {
		t.Fatalf("authenticated record: %+v", got)
	}
	// A capitalised local part finds the lower-case record too.
	if got := d.DiscoverOpenPGP(ctx, "Bob@dest.test"); len(got.Keys) != 1 {
		t.Errorf("Bob@: %+v", got)
	}
	if got := d.DiscoverOpenPGP(ctx, "carol@dest.test"); len(got.Keys) != 0 || got.Tried[0] != "no OPENPGPKEY record" {
		t.Errorf("no record: %+v", got)
	}

	f.dns.SetAD(false)
	if got := d.DiscoverOpenPGP(ctx, "bob@dest.test"); len(got.Keys) != 0 || got.Tried[0] != "OPENPGPKEY record not DNSSEC-authenticated, not used" {
		t.Errorf("without the AD bit: %+v", got)
	}

	f.dns.SetAD(true)
	f.res.DNSSECTrusted = false
	if got := d.DiscoverOpenPGP(ctx, "bob@dest.test"); len(got.Keys) != 0 || !strings.Contains(got.Tried[0], "dnssec_trusted_resolver is off") {
		t.Errorf("an untrusted resolver's AD bit: %+v", got)
	}
	if n := f.dns.Queries(openpgpkeyName("bob", "dest.test")); n != 3 {
		t.Errorf("%d queries; an untrusted resolver must not even be asked", n)
	}
}

// TestKeyringCachesWKDFailures: a burst of mail to a partner without a
// key asks its directory once; a key published later is found once the
// negative entry lapses.
func TestKeyringCachesWKDFailures(t *testing.T) {
	f := newFixture(t)
	host := newWKDHost(t, f.dns, f.ca, "127.0.0.8", f.port, "openpgpkey.dest.test")
	now := testNow
	ring := certs.NewDiscoveringKeyring(certs.NewSpoolKeyStore(openSpool(t)), func() time.Time { return now },
		f.discoverer(Options{WKD: true, OPENPGPKEY: true}), certs.DiscoveryOptions{NegativeTTL: time.Minute})
	for range 5 {
		_, err := ring.FindOpenPGPRecipient(context.Background(), "bob@dest.test")
		if !errors.Is(err, certs.ErrNoUsableKey) || !strings.Contains(err.Error(), "no OpenPGP key for bob@dest.test: WKD 404 (advanced), OPENPGPKEY not used") {
			t.Fatalf("no key: %v", err)
		}
	}
	if n := host.hitCount(); n != 1 {
		t.Errorf("%d requests for five messages, want 1", n)
	}
	_, bobKey := newKey(t, "bob@dest.test")
	host.publish("/.well-known/openpgpkey/dest.test/hu/"+wkdHash("bob"), bobKey)
	now = now.Add(time.Minute)
	for range 3 {
		if r, err := ring.FindOpenPGPRecipient(context.Background(), "bob@dest.test"); err != nil || r.Key.Source != certs.SourceWKD {
			t.Fatalf("after the key was published: %+v, %v", r, err)
		}
	}
	if n := host.hitCount(); n != 2 {
		t.Errorf("%d requests, want 2", n)
	}
}

func fp(e *openpgp.Entity) string {
	return strings.ToUpper(hex.EncodeToString(e.PrimaryKey.Fingerprint))
}

// TestImportedKeyIsNeverOverriddenByWKD: the directory publishes
// another key for an address the admin imported a key for; the imported
// key is used and the directory is never asked.
func TestImportedKeyIsNeverOverriddenByWKD(t *testing.T) {
	f := newFixture(t)
	host := newWKDHost(t, f.dns, f.ca, "127.0.0.8", f.port, "openpgpkey.dest.test")
	_, published := newKey(t, "bob@dest.test")
	host.publish("/.well-known/openpgpkey/dest.test/hu/"+wkdHash("bob"), published)
	imported, importedKey := newKey(t, "bob@dest.test")
	ring := certs.NewDiscoveringKeyring(certs.NewSpoolKeyStore(openSpool(t)), func() time.Time { return testNow },
		f.discoverer(Options{WKD: true}), certs.DiscoveryOptions{})
	if _, err := ring.ImportKeys(importedKey); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		r, err := ring.FindOpenPGPRecipient(context.Background(), "bob@dest.test")
		if err != nil || r.Key.Fingerprint != fp(imported) || r.Key.Source != certs.SourceImport {
			t.Fatalf("FindOpenPGPRecipient = %+v, %v", r, err)
		}
	}
	if n := host.hitCount(); n != 0 {
		t.Errorf("the directory was asked %d times for an address with an imported key", n)
	}
}

func openSpool(t *testing.T) *queue.Store {
	t.Helper()
	dir := t.TempDir()
	store, err := queue.Open(queue.Options{Path: filepath.Join(dir, "spool.db"), KeyFile: filepath.Join(dir, "spool.key")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

// TestUnreachableDirectoryIsAskedOncePerDomain: a directory host that
// does not complete a TLS handshake costs one attempt for all the
// addresses of its domain until DomainFailureTTL has passed.
func TestUnreachableDirectoryIsAskedOncePerDomain(t *testing.T) {
	f := newFixture(t)
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.8", strconv.Itoa(f.port)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var accepted atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	f.dns.AddA("openpgpkey.down.test", "127.0.0.8")
	now := testNow
	d := f.discoverer(Options{WKD: true})
	d.opts.Now = func() time.Time { return now }
	for _, a := range []string{"a@down.test", "b@down.test", "c@down.test"} {
		got := d.DiscoverOpenPGP(context.Background(), a)
		if len(got.Keys) != 0 || !strings.Contains(got.Tried[0], "WKD (advanced) openpgpkey.down.test unreachable") {
			t.Fatalf("%s: %+v", a, got)
		}
	}
	if n := accepted.Load(); n != 1 {
		t.Errorf("%d connections for three addresses of an unreachable directory, want 1", n)
	}
	now = now.Add(10 * time.Minute)
	d.DiscoverOpenPGP(context.Background(), "d@down.test")
	if n := accepted.Load(); n != 2 {
		t.Errorf("%d connections after DomainFailureTTL, want 2", n)
	}
}
