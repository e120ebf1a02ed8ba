package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testutil"
)

func TestDKIMKeygenAndCheck(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "example.org.s1.pem")
	code, out, errOut := sealgate(t, "dkim", "keygen", "--domain", "example.org", "--selector", "s1", "--out", keyFile)
	if code != 0 {
		t.Fatalf("keygen: exit %d %s", code, errOut)
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	m := regexp.MustCompile(`s1\._domainkey\.example\.org\. IN TXT \( (.*) \)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("keygen printed no DNS record:\n%s", out)
	}
	var chunks []string
	for _, q := range regexp.MustCompile(`"([^"]*)"`).FindAllStringSubmatch(m[1], -1) {
		if len(q[1]) > 255 {
			t.Errorf("TXT string of %d bytes", len(q[1]))
		}
		chunks = append(chunks, q[1])
	}
	if len(chunks) < 2 || !strings.HasPrefix(chunks[0], "v=DKIM1; k=rsa; p=") {
		t.Fatalf("record %q: a 2048-bit key needs more than one 255-byte string", chunks)
	}
	if code, _, errOut := sealgate(t, "dkim", "keygen", "--domain", "example.org", "--selector", "s1", "--out", keyFile); code == 0 {
		t.Error("keygen overwrote an existing key")
	} else if !strings.Contains(errOut, "already exists") {
		t.Errorf("keygen over an existing file: %s", errOut)
	}
	if code, _, _ := sealgate(t, "dkim", "keygen", "--domain", "example.org", "--selector", "s2", "--bits", "1024", "--out", filepath.Join(dir, "weak.pem")); code != 2 {
		t.Errorf("keygen --bits 1024: exit %d, want 2", code)
	}

	dns := testutil.NewDNSServer(t)
	dns.AddTXT("s1._domainkey.example.org", chunks...)
	cfgPath := filepath.Join(dir, "sealgate.yaml")
	writeFile(t, cfgPath, fmt.Sprintf("outbound: {dns_resolver: %q}\ndkim:\n  keys:\n    - {domain: example.org, selector: s1, key_file: %q}\n", dns.Addr(), keyFile))
	code, out, errOut = sealgate(t, "dkim", "check", "--domain", "example.org", "--config", cfgPath)
	if code != 0 || !strings.Contains(out, "s1._domainkey.example.org: ok") {
		t.Errorf("check of the published record: exit %d\n%s%s", code, out, errOut)
	}

	// A record for another key is a mismatch; a missing one too.
	other := filepath.Join(dir, "other.pem")
	sealgate(t, "dkim", "keygen", "--domain", "example.org", "--selector", "s3", "--algo", "ed25519", "--out", other)
	writeFile(t, cfgPath, fmt.Sprintf("outbound: {dns_resolver: %q}\ndkim:\n  keys:\n    - {domain: example.org, selector: s1, key_file: %q}\n    - {domain: example.org, selector: s3, key_file: %q}\n", dns.Addr(), keyFile, other))
	dns.AddTXT("s3._domainkey.example.org", chunks...) // the RSA record under the Ed25519 selector
	code, out, _ = sealgate(t, "dkim", "check", "--domain", "example.org", "--config", cfgPath)
	if code != 1 || !strings.Contains(out, "s3._domainkey.example.org: MISMATCH") || !strings.Contains(out, "s1._domainkey.example.org: ok") {
		t.Errorf("check with a wrong record: exit %d\n%s", code, out)
	}
}

// TestDKIMKeygenIntoDataDirPrintsAPathTheConfigCanUse: without --out the
// key goes into the configured data dir, and the key_file printed, pasted
// into that config as the output says, names the same key even though
// the config lies elsewhere than the directory keygen ran in (a config's
// relative paths count from its own directory).
func TestDKIMKeygenIntoDataDirPrintsAPathTheConfigCanUse(t *testing.T) {
	root := t.TempDir()
	confDir, home := filepath.Join(root, "etc", "sealgate"), filepath.Join(root, "home")
	for _, d := range []string{confDir, home} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	base := "data_dir: ../../var/sealgate\n"
	writeFile(t, filepath.Join(confDir, "sealgate.yaml"), base)
	t.Chdir(home)
	cfgPath := filepath.Join("..", "etc", "sealgate", "sealgate.yaml")

	code, out, errOut := sealgate(t, "dkim", "keygen", "--domain", "example.org", "--selector", "s1", "--config", cfgPath)
	if code != 0 {
		t.Fatalf("keygen: exit %d %s", code, errOut)
	}
	want, err := os.Stat(filepath.Join(root, "var", "sealgate", "dkim", "example.org.s1.rsa.pem"))
	if err != nil {
		t.Fatalf("the key is not in the config's data dir: %v\n%s", err, out)
	}
	_, entry, ok := strings.Cut(out, "Then add to the config and reload:\n\n")
	m := regexp.MustCompile(`(?m)^      key_file: (.+)$`).FindStringSubmatch(entry)
	if !ok || m == nil {
		t.Fatalf("keygen printed no config entry:\n%s", out)
	}
	if got, err := os.Stat(m[1]); !filepath.IsAbs(m[1]) || err != nil || !os.SameFile(got, want) {
		t.Errorf("printed key_file %q: want an absolute path to the key written (%v)", m[1], err)
	}

	writeFile(t, filepath.Join(confDir, "sealgate.yaml"), base+entry)
	if code, out, errOut := sealgate(t, "config", "check", cfgPath); code != 0 {
		t.Errorf("config check with the printed entry: exit %d\n%s%s", code, out, errOut)
	}
}
