package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/internal/testutil"
)

// TestSIGHUPLoadsANewDKIMKey runs the binary as an admin rotating keys
// would: a key is added to the config, SIGHUP is sent, and the next
// message leaves signed with the new selector too (a valid signature),
// after the reload's log line names the key.
func TestSIGHUPLoadsANewDKIMKey(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	records := map[string]string{}
	keyEntry := func(selector, algo string) string {
		key, pemKey, err := certs.GenerateDKIMKey(algo, 2048)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, selector+".pem")
		if err := certs.WriteDKIMKey(path, pemKey); err != nil {
			t.Fatal(err)
		}
		if records[selector+"._domainkey.org.test"], err = certs.DKIMRecord(key); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("    - {domain: org.test, selector: %s, key_file: %s}\n", selector, path)
	}
	first, added := keyEntry("s1", "rsa"), keyEntry("s2", "ed25519")

	dns := testutil.NewDNSServer(t)
	dns.AddMX("dest.test", "mx.dest.test", 10)
	dns.AddA("mx.dest.test", "127.0.0.1")
	sink := testutil.NewSMTPSink(t, testutil.SinkOptions{})
	smtpAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	cfgPath := filepath.Join(dir, "sealgate.yaml")
	base := fmt.Sprintf(`hostname: gw.test
data_dir: %s
log: {format: json}
inbound: {listen: %s}
admin: {listen: "127.0.0.1:%d"}
outbound:
  dns_resolver: %s
  smtp_port: %d
  connect_timeout: 2s
  allowed_private_networks: [127.0.0.0/8] # the sink
dkim:
  keys:
`, filepath.Join(dir, "data"), smtpAddr, testutil.FreePort(t), dns.Addr(), sink.Port())
	writeFile(t, cfgPath, base+first)
	srv := startServer(t, bin, cfgPath, smtpAddr)
	logPath := filepath.Join(filepath.Dir(srv.Stderr.(*os.File).Name()), "server.log")

	send := func(subject string) {
		t.Helper()
		c, err := smtp.Dial(smtpAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		msg := "From: alice@org.test\r\nTo: bob@dest.test\r\nSubject: " + subject + "\r\n\r\nHello.\r\n"
		if err := c.SendMail("alice@org.test", []string{"bob@dest.test"}, strings.NewReader(msg)); err != nil {
			t.Fatalf("send %s: %v", subject, err)
		}
	}
	send("before")
	if got := dkimSelectors(t, sink.WaitMessages(t, 1, 20*time.Second)[0].Data, records); !slices.Equal(got, []string{"s1"}) {
		t.Fatalf("before the reload, valid signatures by %v, want [s1]", got)
	}

	writeFile(t, cfgPath, base+first+added)
	if err := srv.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The reload names the new key, then says it is done.
	loaded := waitLogLine(t, logPath, func(l map[string]any) bool { return l["msg"] == "DKIM key loaded" && l["selector"] == "s2" })
	if loaded["domain"] != "org.test" || loaded["algorithm"] != "ed25519" {
		t.Errorf("reload's key line: %v", loaded)
	}
	waitLogLine(t, logPath, func(l map[string]any) bool { return strings.HasPrefix(fmt.Sprint(l["msg"]), "config reloaded") })

	send("after")
	msgs := sink.WaitMessages(t, 2, 20*time.Second)
	if got := dkimSelectors(t, msgs[1].Data, records); !slices.Equal(got, []string{"s1", "s2"}) {
		t.Errorf("after the reload, valid signatures by %v, want [s1 s2]", got)
	}
}

// dkimSelectors verifies msg's DKIM signatures against records and
// returns the selectors (s= tags) of the valid ones, sorted.
func dkimSelectors(t *testing.T, msg []byte, records map[string]string) []string {
	t.Helper()
	verifs, err := dkim.VerifyWithOptions(bytes.NewReader(msg), &dkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) { return []string{records[name]}, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	header, _, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
	unfolded := regexp.MustCompile(`\r\n[ \t]+`).ReplaceAllString(string(header), " ")
	selector := regexp.MustCompile(`(?:^|[;\s])s=([A-Za-z0-9._-]+)`)
	var valid []string
	for _, line := range strings.Split(unfolded, "\r\n") {
		name, value, _ := strings.Cut(line, ":")
		if !strings.EqualFold(name, "DKIM-Signature") {
			continue
		}
		m := selector.FindStringSubmatch(value)
		if m == nil {
			t.Fatalf("a DKIM-Signature without s=: %s", value)
		}
		// go-msgauth reports the verifications in the order of the fields.
		if i := len(valid); i < len(verifs) && verifs[i].Err == nil {
			valid = append(valid, m[1])
		} else {
			valid = append(valid, m[1]+" (invalid)")
		}
	}
	if len(valid) != len(verifs) {
		t.Fatalf("%d DKIM-Signature fields, %d verified", len(valid), len(verifs))
	}
	slices.Sort(valid)
	return valid
}

// waitLogLine waits (bounded) until the JSON log at path has a line that
// match accepts, and returns it.
func waitLogLine(t *testing.T, path string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	for range 500 {
		if f, err := os.Open(path); err == nil {
			sc := bufio.NewScanner(f)
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				var l map[string]any
				if json.Unmarshal(sc.Bytes(), &l) == nil && match(l) {
					f.Close()
					return l
				}
			}
			f.Close()
		}
		time.Sleep(20 * time.Millisecond)
	}
	data, _ := os.ReadFile(path)
	t.Fatalf("the log never had the line awaited:\n%s", tail(data, 4000))
	return nil
}
