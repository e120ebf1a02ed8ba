package probe

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/internal/testutil"
	"github.com/sealgate/sealgate/queue"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestTLSMonitorProbesAndReports(t *testing.T) {
	dns := testutil.NewDNSServer(t)
	ca := testutil.NewCA(t)
	port := testutil.FreePort(t)
	for i, d := range []struct {
		name string
		tls  bool
	}{{"good.test", true}, {"dropped.test", false}} {
		host := "mx." + d.name
		ip := fmt.Sprintf("127.0.0.%d", i+2)
		dns.AddMX(d.name, host, 10)
		dns.AddA(host, ip)
		testutil.NewSMTPSink(t, testutil.SinkOptions{ListenAddr: fmt.Sprintf("%s:%d", ip, port), Hostname: host, TLS: d.tls, CA: ca})
	}
	dns.AddTLSA("_25._tcp.mx.good.test", 3, 1, 1, strings.Repeat("ab", 32))
	dns.SetAD(true)

	cfg, err := config.Parse("t.yaml", []byte(fmt.Sprintf("outbound: {dns_resolver: %q, smtp_port: %d, extra_root_cas: [%q], allowed_private_networks: [127.0.0.0/8]}\n",
		dns.Addr(), port, ca.WritePEM(t, t.TempDir()))))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	store, err := queue.Open(queue.Options{Path: filepath.Join(dir, "s.db"), KeyFile: filepath.Join(dir, "k")})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for _, d := range []string{"good.test", "dropped.test"} {
		store.ObserveTLS(queue.TLSObservation{Domain: d, Connected: true, TLSVersion: "TLS1.3"})
	}
	prober, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	m := NewMonitor(MonitorOptions{Store: store, Prober: prober, Interval: time.Hour, ReportAfter: time.Nanosecond, Concurrency: 2,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	m.now = func() time.Time { return time.Now().Add(time.Second) }
	m.Round(context.Background())

	good, _ := store.DomainInfo("good.test")
	if good.LastChecked.IsZero() || !good.ProbeFailingSince.IsZero() || !good.Verified || !good.DANE {
		t.Errorf("good.test after probe: %+v", good)
	}
	dropped, _ := store.DomainInfo("dropped.test")
	if dropped.ProbeFailingSince.IsZero() || dropped.LastProbeError != "STARTTLS not offered" || !dropped.TLSSeen {
		t.Errorf("dropped.test after probe: %+v", dropped)
	}
	if out := logs.String(); !strings.Contains(out, "stopped offering TLS") || !strings.Contains(out, "dropped.test") || strings.Contains(out, "domain=good.test") {
		t.Errorf("report:\n%s", out)
	}
}

// TestProbeRefusesInternalAddresses: a domain whose MX (or MTA-STS host)
// resolves to loopback is not probed unless the admin allowed that
// network, as for delivery: a probe must not be a port scanner for
// whoever controls a partner's DNS.
func TestProbeRefusesInternalAddresses(t *testing.T) {
	dns := testutil.NewDNSServer(t)
	port := testutil.FreePort(t)
	dns.AddMX("inside.test", "mx.inside.test", 10)
	dns.AddA("mx.inside.test", "127.0.0.2")
	sink := testutil.NewSMTPSink(t, testutil.SinkOptions{ListenAddr: fmt.Sprintf("127.0.0.2:%d", port), Hostname: "mx.inside.test"})
	cfg, err := config.Parse("t.yaml", []byte(fmt.Sprintf("outbound: {dns_resolver: %q, smtp_port: %d}\n", dns.Addr(), port)))
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	res := p.Probe(context.Background(), "inside.test")
	if !strings.Contains(res.Error, "not dialled") || res.STARTTLS {
		t.Errorf("probe of a loopback MX: %+v", res)
	}
	if n := sink.Connections(); n != 0 {
		t.Errorf("the probe connected %d times to an internal address", n)
	}
}
