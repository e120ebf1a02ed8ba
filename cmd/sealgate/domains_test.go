package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testutil"
	"github.com/sealgate/sealgate/queue"
)

func TestDomainsCommands(t *testing.T) {
	dir := t.TempDir()
	dns := testutil.NewDNSServer(t)
	ca := testutil.NewCA(t)
	port := testutil.FreePort(t)
	dns.AddMX("secure.test", "mx.secure.test", 10)
	dns.AddA("mx.secure.test", "127.0.0.2")
	testutil.NewSMTPSink(t, testutil.SinkOptions{ListenAddr: fmt.Sprintf("127.0.0.2:%d", port), Hostname: "mx.secure.test", TLS: true, CA: ca})
	dns.AddMX("plain.test", "mx.plain.test", 10)
	dns.AddA("mx.plain.test", "127.0.0.3")
	testutil.NewSMTPSink(t, testutil.SinkOptions{ListenAddr: fmt.Sprintf("127.0.0.3:%d", port), Hostname: "mx.plain.test"})
	cfgPath := filepath.Join(dir, "sealgate.yaml")
	writeFile(t, cfgPath, fmt.Sprintf("data_dir: %s\noutbound: {dns_resolver: %q, smtp_port: %d, extra_root_cas: [%q], allowed_private_networks: [127.0.0.0/8]}\n",
		filepath.Join(dir, "data"), dns.Addr(), port, ca.WritePEM(t, dir)))

	code, out, _ := sealgate(t, "domains", "check", "secure.test", "--config", cfgPath)
	for _, want := range []string{"MX hosts:  mx.secure.test", "STARTTLS:  true", "TLS:       TLS1.3", "Cert:      verified", `subject="CN=mx.secure.test"`} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("domains check secure.test: exit %d, lacks %q:\n%s", code, want, out)
		}
	}
	code, out, _ = sealgate(t, "domains", "check", "plain.test", "--config", cfgPath, "--json")
	var res struct {
		STARTTLS bool
		Error    string
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != 1 || res.STARTTLS || res.Error != "STARTTLS not offered" {
		t.Errorf("domains check plain.test: exit %d %+v %v\n%s", code, res, err, out)
	}

	list := filepath.Join(dir, "domains.txt")
	writeFile(t, list, "# partners\nsecure.test\nplain.test\nnonexistent.test\n")
	code, out, _ = sealgate(t, "domains", "scan", "--file", list, "--config", cfgPath)
	lines := strings.Split(out, "\n")
	if code != 0 || len(lines) < 4 || !strings.HasPrefix(lines[1], "secure.test") || !strings.Contains(lines[1], "TLS1.3") ||
		!strings.HasPrefix(lines[2], "plain.test") || !strings.Contains(out, "3 domains, 2 without TLS") {
		t.Errorf("domains scan: exit %d\n%s", code, out)
	}

	// History from a (stopped) server's spool: list and reset.
	store, err := queue.Open(queue.Options{Path: filepath.Join(dir, "data", "spool.db"), KeyFile: filepath.Join(dir, "data", "spool.key")})
	if err != nil {
		t.Fatal(err)
	}
	store.ObserveTLS(queue.TLSObservation{Domain: "secure.test", Connected: true, TLSVersion: "TLS1.3", Verified: true})
	store.Close()
	code, out, _ = sealgate(t, "domains", "list", "--config", cfgPath)
	if code != 0 || !strings.Contains(out, "secure.test") || !strings.Contains(out, "required") || !strings.Contains(out, "1 domains") {
		t.Errorf("domains list: exit %d\n%s", code, out)
	}
	if code, _, errOut := sealgate(t, "domains", "reset", "secure.test", "--config", cfgPath); code != 0 {
		t.Errorf("domains reset: %d %s", code, errOut)
	}
	if code, _, errOut := sealgate(t, "domains", "reset", "secure.test", "--config", cfgPath); code != 1 || !strings.Contains(errOut, "no TLS history") {
		t.Errorf("second reset: %d %s", code, errOut)
	}
}

// TestDomainsCheckSaysWhatDeliveryWouldDo: under the default level a
// server without STARTTLS gets the mail in clear; once the domain has
// shown TLS (its history) or the config requires TLS, the check says the
// mail waits, why, and which setting would change it.
func TestDomainsCheckSaysWhatDeliveryWouldDo(t *testing.T) {
	dir := t.TempDir()
	dns := testutil.NewDNSServer(t)
	port := testutil.FreePort(t)
	dns.AddMX("plain.test", "mx.plain.test", 10)
	dns.AddA("mx.plain.test", "127.0.0.3")
	testutil.NewSMTPSink(t, testutil.SinkOptions{ListenAddr: fmt.Sprintf("127.0.0.3:%d", port), Hostname: "mx.plain.test"})
	base := fmt.Sprintf("data_dir: %s\noutbound:\n  dns_resolver: %q\n  smtp_port: %d\n  allowed_private_networks: [127.0.0.0/8]\n",
		filepath.Join(dir, "data"), dns.Addr(), port)
	cfgPath := filepath.Join(dir, "sealgate.yaml")
	writeFile(t, cfgPath, base)
	check := func() string {
		t.Helper()
		_, out, _ := sealgate(t, "domains", "check", "plain.test", "--config", cfgPath)
		return out
	}
	if out := check(); !strings.Contains(out, "TLS level: may\n") || !strings.Contains(out, "Delivery:  in clear: the server does not offer STARTTLS") ||
		strings.Contains(out, "To change") {
		t.Errorf("under may:\n%s", out)
	}

	writeFile(t, cfgPath, base+"  tls_policy:\n    domains: {plain.test: encrypt}\n")
	if out := check(); !strings.Contains(out, "Delivery:  deferred: TLS level encrypt (required by tls_policy encrypt (plain.test)), and the server does not offer STARTTLS") ||
		!strings.Contains(out, "To change: outbound.tls_policy.domains: {plain.test: may} in the config, then SIGHUP") {
		t.Errorf("under tls_policy encrypt:\n%s", out)
	}

	writeFile(t, cfgPath, base)
	seedSpool(t, filepath.Join(dir, "data"))
	store, err := queue.Open(queue.Options{Path: filepath.Join(dir, "data", "spool.db"), KeyFile: filepath.Join(dir, "data", "spool.key")})
	if err != nil {
		t.Fatal(err)
	}
	store.ObserveTLS(queue.TLSObservation{Domain: "plain.test", Connected: true, TLSVersion: "TLS1.2"})
	store.Close()
	out := check()
	if !strings.Contains(out, "Delivery:  deferred: TLS level encrypt (required by domain history (TLS seen since") ||
		!strings.Contains(out, `"sealgate domains reset plain.test" forgets its TLS history`) ||
		!strings.Contains(out, "outbound.tls_policy.domains: {plain.test: none}") {
		t.Errorf("with TLS history:\n%s", out)
	}
}
