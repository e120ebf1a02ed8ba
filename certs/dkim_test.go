package certs

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/sealgate/sealgate/config"
)

const dkimTestMessage = "From: Alice <alice@example.org>\r\nTo: bob@dest.test\r\nCc: carol@dest.test\r\n" +
	"Reply-To: alice@example.org\r\nSubject: lab results\r\n" +
	"Date: Mon, 23 Nov 2026 06:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n\r\nYour results are ready.\r\n"

// dualSigner writes an RSA and an Ed25519 key for example.org and returns
// a signer and the DNS records to publish, by name.
func dualSigner(t *testing.T) (*DKIMSigner, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	records := map[string]string{}
	var keys []config.DKIMKey
	for _, k := range []struct{ algo, selector string }{{"ed25519", "ed"}, {"rsa", "rsa"}} {
		key, pemKey, err := GenerateDKIMKey(k.algo, 2048)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, k.selector+".pem")
		if err := WriteDKIMKey(path, pemKey); err != nil {
			t.Fatal(err)
		}
		rec, err := DKIMRecord(key)
		if err != nil {
			t.Fatal(err)
		}
		records[k.selector+"._domainkey.example.org"] = rec
		keys = append(keys, config.DKIMKey{Domain: "example.org", Selector: k.selector, KeyFile: path})
	}
	s, err := NewDKIMSigner(keys)
	if err != nil {
		t.Fatal(err)
	}
	return s, records
}

func TestDKIMDualSigningVerifies(t *testing.T) {
	s, records := dualSigner(t)
	signed, domain, ok, err := s.Sign([]byte(dkimTestMessage))
	if err != nil || !ok || domain != "example.org" {
		t.Fatalf("Sign: %v %q %v", ok, domain, err)
	}
	if n := bytes.Count(signed, []byte("DKIM-Signature:")); n != 2 {
		t.Fatalf("%d signatures, want 2 (RSA and Ed25519)", n)
	}
	head, _, _ := bytes.Cut(signed, []byte("\r\n\r\n"))
	for _, want := range []string{"a=rsa-sha256", "a=ed25519-sha256", "c=relaxed/relaxed", "d=example.org"} {
		if !bytes.Contains(head, []byte(want)) {
			t.Errorf("signatures lack %s", want)
		}
	}
	lookup := func(name string) ([]string, error) { return []string{records[name]}, nil }
	verifs, err := dkim.VerifyWithOptions(bytes.NewReader(signed), &dkim.VerifyOptions{LookupTXT: lookup})
	if err != nil || len(verifs) != 2 {
		t.Fatalf("verify: %v, %d results", err, len(verifs))
	}
	for _, v := range verifs {
		if v.Err != nil {
			t.Errorf("signature of %s: %v", v.Domain, v.Err)
		}
	}

	// A second instance of a signed field added after signing is caught
	// because the field is oversigned. The forgery goes above the
	// original: a verifier takes instances from the bottom up (RFC 6376
	// §5.4.2), so without oversigning it would check the original and
	// pass, and many mail readers show the topmost instance.
	for _, forged := range []string{
		"From: Mallory <ceo@example.org>", "To: mallory@evil.test", "Cc: mallory@evil.test",
		"Reply-To: mallory@evil.test", "Subject: pay here", "Date: Tue, 24 Nov 2026 06:00:00 +0000",
		"Message-ID: <2@example.org>",
	} {
		field, _, _ := strings.Cut(forged, ":")
		i := bytes.Index(signed, []byte("\r\n"+field+": "))
		if i < 0 {
			t.Fatalf("signed message lacks %s", field)
		}
		tampered := append(append(append([]byte(nil), signed[:i+2]...), forged+"\r\n"...), signed[i+2:]...)
		verifs, _ = dkim.VerifyWithOptions(bytes.NewReader(tampered), &dkim.VerifyOptions{LookupTXT: lookup})
		for _, v := range verifs {
			if v.Err == nil {
				t.Errorf("a second %s added above the original verified: %s is not oversigned", field, field)
			}
		}
	}

	if _, _, ok, _ := s.Sign([]byte("From: x@other.test\r\n\r\nbody\r\n")); ok {
		t.Error("a domain without a key was signed")
	}
}

// TestDKIMInteropWithDkimpy verifies our signatures with an independent
// implementation, dkimpy (Debian python3-dkim, with python3-nacl for
// Ed25519), which .ci/run installs.
func TestDKIMInteropWithDkimpy(t *testing.T) {
	if err := exec.Command("/usr/bin/python3", "-c", "import dkim, nacl").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("python3-dkim / python3-nacl missing in CI: %v", err)
		}
		t.Skip("python3-dkim not installed")
	}
	s, records := dualSigner(t)
	signed, _, _, err := s.Sign([]byte(dkimTestMessage))
	if err != nil {
		t.Fatal(err)
	}
	run := func(msg []byte) (string, error) {
		path := filepath.Join(t.TempDir(), "msg.eml")
		os.WriteFile(path, msg, 0o600)
		args := []string{"testdata/dkimverify.py", path}
		for name, rec := range records {
			args = append(args, name+"="+rec)
		}
		out, err := exec.Command("/usr/bin/python3", args...).CombinedOutput()
		return string(out), err
	}
	out, err := run(signed)
	if err != nil || strings.Count(out, "pass") != 2 {
		t.Errorf("dkimpy rejects our signatures: %v\n%s", err, out)
	}
	tampered := bytes.Replace(signed, []byte("ready."), []byte("ready!"), 1)
	if out, err := run(tampered); err == nil {
		t.Errorf("dkimpy accepted a tampered body:\n%s", out)
	}
}

func TestDKIMKeyRules(t *testing.T) {
	if _, _, err := GenerateDKIMKey("rsa", 1024); err == nil {
		t.Error("a 1024-bit RSA key was generated")
	}
	dir := t.TempDir()
	_, pemKey, err := GenerateDKIMKey("ed25519", 0)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "k.pem")
	if err := WriteDKIMKey(path, pemKey); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode %o", fi.Mode().Perm())
	}
	if err := WriteDKIMKey(path, pemKey); err == nil {
		t.Error("an existing key file was overwritten")
	}
	long := strings.Repeat("a", 600)
	if got := SplitTXT(long); got != `"`+long[:255]+`" "`+long[255:510]+`" "`+long[510:]+`"` {
		t.Errorf("SplitTXT: %s", got)
	}
}
