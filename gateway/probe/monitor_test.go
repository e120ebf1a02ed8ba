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

	cfg, err := config.Parse("t.yaml", []byte(fmt.Sprintf("outbound: {dns_resolver: %q, smtp_port: %d, extra_root_cas: [%q]}\n",
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
