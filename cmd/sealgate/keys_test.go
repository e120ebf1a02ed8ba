package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// writeKey writes a fresh Curve25519 key for email to dir and returns
// the public and private key files and the fingerprint.
func writeKey(t *testing.T, dir, email string) (public, private, fp string) {
	t.Helper()
	e, err := openpgp.NewEntity("Test", "", email, &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, ser func(w *bytes.Buffer) error) string {
		var raw, out bytes.Buffer
		if err := ser(&raw); err != nil {
			t.Fatal(err)
		}
		w, _ := armor.Encode(&out, typ, nil)
		w.Write(raw.Bytes())
		w.Close()
		path := filepath.Join(dir, name)
		writeFile(t, path, out.String())
		return path
	}
	public = write(email+".asc", openpgp.PublicKeyType, func(w *bytes.Buffer) error { return e.Serialize(w) })
	private = write(email+".secret.asc", openpgp.PrivateKeyType, func(w *bytes.Buffer) error { return e.SerializePrivate(w, nil) })
	return public, private, fmt.Sprintf("%X", e.PrimaryKey.Fingerprint)
}

func TestKeysCommandsOnStoppedServer(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sealgate.yaml")
	writeFile(t, cfg, "data_dir: "+filepath.Join(dir, "data")+"\n")
	seedSpool(t, filepath.Join(dir, "data"))
	pub, secret, fp := writeKey(t, dir, "bob@dest.test")
	garbage := filepath.Join(dir, "garbage.asc")
	writeFile(t, garbage, "not a key\n")

	code, stdout, stderr := sealgate(t, "keys", "import", pub, "--config", cfg)
	if code != 0 || !strings.Contains(stdout, "imported") || !strings.Contains(stdout, fp) || !strings.Contains(stdout, "bob@dest.test") {
		t.Fatalf("keys import: exit %d\n%s%s", code, stdout, stderr)
	}
	code, _, stderr = sealgate(t, "keys", "import", secret, garbage, "--config", cfg)
	if code != 1 || !strings.Contains(stderr, "private key") || !strings.Contains(stderr, "garbage.asc") {
		t.Errorf("keys import of a private key and garbage: exit %d: %s", code, stderr)
	}
	if code, _, stderr := sealgate(t, "keys", "import", filepath.Join(dir, "missing.asc"), "--config", cfg); code != 2 {
		t.Errorf("keys import of a missing file: exit %d: %s", code, stderr)
	}

	code, stdout, _ = sealgate(t, "keys", "list", "--json", "--config", cfg)
	var keys []struct {
		Address, Kind, Fingerprint, Algorithm, Source string
		Data                                          []byte
	}
	if err := json.Unmarshal([]byte(stdout), &keys); code != 0 || err != nil || len(keys) != 1 {
		t.Fatalf("keys list --json: exit %d, %v:\n%s", code, err, stdout)
	}
	if k := keys[0]; k.Address != "bob@dest.test" || k.Kind != "openpgp" || k.Fingerprint != fp || k.Source != "import" || k.Data != nil {
		t.Errorf("listed key %+v", k)
	}
	code, stdout, _ = sealgate(t, "keys", "list", "--config", cfg)
	if code != 0 || !strings.Contains(stdout, fp) || !strings.Contains(stdout, "never") || !strings.Contains(stdout, "1 keys") {
		t.Errorf("keys list:\n%s", stdout)
	}
	code, stdout, _ = sealgate(t, "keys", "show", "Bob@DEST.test", "--config", cfg)
	if code != 0 || !strings.Contains(stdout, "Fingerprint: "+fp) {
		t.Errorf("keys show: exit %d\n%s", code, stdout)
	}
	if code, _, stderr := sealgate(t, "keys", "show", "carol@dest.test", "--config", cfg); code != 1 || !strings.Contains(stderr, "no key for") {
		t.Errorf("keys show of an unknown address: exit %d: %s", code, stderr)
	}
	if code, _, _ := sealgate(t, "keys", "show", "not an address", "--config", cfg); code != 2 {
		t.Errorf("keys show of a malformed address: exit %d", code)
	}
	if code, stdout, _ := sealgate(t, "keys", "remove", strings.ToLower(fp), "--config", cfg); code != 0 || !strings.Contains(stdout, "removed") {
		t.Errorf("keys remove: exit %d\n%s", code, stdout)
	}
	if code, _, stderr := sealgate(t, "keys", "remove", fp, "--config", cfg); code != 1 || !strings.Contains(stderr, "no key with fingerprint") {
		t.Errorf("keys remove again: exit %d: %s", code, stderr)
	}
}
