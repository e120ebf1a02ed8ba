package report

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealgate/sealgate/gateway/delivery"
	"github.com/sealgate/sealgate/internal/dnsres"
	"github.com/sealgate/sealgate/internal/testutil"
	"github.com/sealgate/sealgate/policy"
	"github.com/sealgate/sealgate/queue"
)

// TestTLSRPTDailyReport counts real delivery sessions (successes and
// failures under an MTA-STS policy, and a session without policy), then
// sends the next day's report by mail and by HTTPS, and checks the JSON
// against RFC 8460's fields.
func TestTLSRPTDailyReport(t *testing.T) {
	f := newFixture(t)
	f.mx("dest.test", "mx.dest.test", "127.0.0.2", 10, testutil.SinkOptions{TLS: true, CA: f.ca})
	f.dns.AddMX("dest.test", "rogue.dest.test", 1) // not in the policy: skipped, a failure
	f.dns.AddA("rogue.dest.test", "127.0.0.3")

	// Where reports go: a mailbox and an HTTPS endpoint.
	var mu sync.Mutex
	var posted [][]byte
	var postedType string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		posted, postedType = append(posted, body), r.Header.Get("Content-Type")
		mu.Unlock()
	}))
	l, _ := net.Listen("tcp", "127.0.0.10:0")
	srv.Listener.Close()
	srv.Listener = l
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{f.ca.Issue(t, "rpt.reports.test")}}
	srv.StartTLS()
	defer srv.Close()
	f.dns.AddA("rpt.reports.test", "127.0.0.10")
	f.dns.AddTXT("_smtp._tls.dest.test", fmt.Sprintf("v=TLSRPTv1; rua=mailto:tls@reports.test,https://rpt.reports.test:%d/tlsrpt", l.Addr().(*net.TCPAddr).Port))

	dir := t.TempDir()
	store, err := queue.Open(queue.Options{Path: filepath.Join(dir, "s.db"), KeyFile: filepath.Join(dir, "k")})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	day := time.Date(2026, 11, 22, 15, 0, 0, 0, time.UTC)
	rep := NewTLSReporter(TLSReporterOptions{Store: store, Resolver: f.resolver, Client: f.resolver.HTTPSClient(f.ca.Pool(), time.Minute),
		Hostname: "gw.test", Organization: "Example Health"})
	rep.now = func() time.Time { return day }

	pol := &policy.MTASTSPolicy{Mode: policy.MTASTSEnforce, MX: []string{"mx.dest.test"}, MaxAge: 24 * time.Hour}
	req := policy.DecideTLS(policy.TLSInputs{Domain: "dest.test", Configured: policy.TLSMay, MTASTS: pol})
	for range 2 {
		_, out := f.d.Deliver(context.Background(), delivery.Request{ID: "T", From: "a@org.test", Domain: "dest.test",
			Recipients: []string{"b@dest.test"}, Body: delivery.Bytes("Subject: t\r\n\r\nx\r\n"), TLS: req,
			Observe: func(s delivery.TLSSession) { rep.Record("dest.test", req, s) }})
		if !out[0].Delivered {
			t.Fatalf("delivery: %+v", out[0])
		}
	}

	// Same day: nothing is due yet.
	rep.SendDue(context.Background())
	if msgs, _ := store.List(); len(msgs) != 0 {
		t.Fatal("a report went out before its day ended")
	}
	rep.now = func() time.Time { return day.Add(24 * time.Hour) }
	rep.SendDue(context.Background())

	msgs, _ := store.List()
	if len(msgs) != 1 || msgs[0].Envelope.Recipients[0] != "tls@reports.test" || msgs[0].Envelope.From != "" {
		t.Fatalf("report mail: %+v", msgs)
	}
	raw, _ := store.Body(msgs[0].ID)
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if subj := m.Header.Get("Subject"); !strings.HasPrefix(subj, "Report Domain: dest.test Submitter: gw.test Report-ID: <") {
		t.Errorf("Subject %q", subj)
	}
	mt, params, _ := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if mt != "multipart/report" || params["report-type"] != "tlsrpt" || m.Header.Get("TLS-Report-Domain") != "dest.test" {
		t.Errorf("report headers: %v", m.Header)
	}
	var gz []byte
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err != nil {
			break
		}
		if p.Header.Get("Content-Type") == "application/tlsrpt+gzip" {
			b, _ := io.ReadAll(p)
			gz, _ = base64.StdEncoding.DecodeString(strings.ReplaceAll(string(b), "\r\n", ""))
		}
	}
	checkTLSReport(t, gz)

	mu.Lock()
	defer mu.Unlock()
	if len(posted) != 1 || postedType != "application/tlsrpt+gzip" {
		t.Fatalf("HTTPS report: %d posts, type %q", len(posted), postedType)
	}
	checkTLSReport(t, posted[0])
	if left, _ := store.TLSRPTBefore("9999-12-31"); len(left) != 0 {
		t.Errorf("aggregates left after sending: %+v", left)
	}
}

// checkTLSReport validates a gzipped report against RFC 8460 §4.4.
func checkTLSReport(t *testing.T, gz []byte) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatalf("report is not gzip: %v", err)
	}
	var r map[string]any
	if err := json.NewDecoder(zr).Decode(&r); err != nil {
		t.Fatalf("report is not JSON: %v", err)
	}
	for _, k := range []string{"organization-name", "date-range", "contact-info", "report-id", "policies"} {
		if _, ok := r[k]; !ok {
			t.Errorf("report lacks %q", k)
		}
	}
	dr := r["date-range"].(map[string]any)
	if dr["start-datetime"] != "2026-11-22T00:00:00Z" || dr["end-datetime"] != "2026-11-22T23:59:59Z" {
		t.Errorf("date-range %v", dr)
	}
	policies := r["policies"].([]any)
	if len(policies) != 1 {
		t.Fatalf("%d policies, want 1 (sts)", len(policies))
	}
	p := policies[0].(map[string]any)
	pol := p["policy"].(map[string]any)
	if pol["policy-type"] != "sts" || pol["policy-domain"] != "dest.test" || fmt.Sprint(pol["policy-string"]) != "[version: STSv1 mode: enforce mx: mx.dest.test max_age: 86400]" {
		t.Errorf("policy %v", pol)
	}
	sum := p["summary"].(map[string]any)
	if sum["total-successful-session-count"] != float64(2) || sum["total-failure-session-count"] != float64(2) {
		t.Errorf("summary %v", sum)
	}
	fd := p["failure-details"].([]any)[0].(map[string]any)
	if fd["result-type"] != "validation-failure" || fd["receiving-mx-hostname"] != "rogue.dest.test" || fd["failed-session-count"] != float64(2) {
		t.Errorf("failure-details %v", fd)
	}
}

// fixture is a deliverer (no connection reuse: every delivery is a TLS
// session to report) whose destinations are sinks on 127.0.0.x at one
// port.
type fixture struct {
	t        *testing.T
	dns      *testutil.DNSServer
	ca       *testutil.CA
	port     int
	resolver *dnsres.Resolver
	d        *delivery.Deliverer
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{t: t, dns: testutil.NewDNSServer(t), ca: testutil.NewCA(t), port: testutil.FreePort(t)}
	r, err := dnsres.New(f.dns.Addr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	f.resolver = r
	f.d = delivery.New(delivery.Options{Hostname: "gw.test", Resolver: r, Port: f.port, RootCAs: f.ca.Pool(),
		ConnectTimeout: 2 * time.Second, CommandTimeout: 5 * time.Second, MaxPerDestination: 2,
		AllowedPrivateNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}) // the sinks
	t.Cleanup(f.d.Close)
	return f
}

func (f *fixture) mx(domain, host, ip string, pref uint16, opts testutil.SinkOptions) *testutil.SMTPSink {
	return testutil.NewMX(f.t, f.dns, domain, host, ip, pref, f.port, opts)
}
