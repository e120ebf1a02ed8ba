package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// TestArchiveKeyFileIsChecked: keys.archive_key_file is checked as an
// import is, by config check and before serve starts anything; a bad
// one is a config error (exit 2) naming file, line and key.
func TestArchiveKeyFileIsChecked(t *testing.T) {
	dir := t.TempDir()
	e, err := openpgp.NewEntity("Org archive", "", "", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		t.Fatal(err)
	}
	keyFile := func(name string, private bool) string {
		var b bytes.Buffer
		typ := openpgp.PublicKeyType
		if private {
			typ = openpgp.PrivateKeyType
		}
		w, _ := armor.Encode(&b, typ, nil)
		if private {
			e.SerializePrivate(w, nil)
		} else {
			e.Serialize(w)
		}
		w.Close()
		p := filepath.Join(dir, name)
		writeFile(t, p, b.String())
		return p
	}
	garbage := filepath.Join(dir, "garbage.asc")
	writeFile(t, garbage, "not a key\n")
	configFor := func(name, file string) string {
		p := filepath.Join(dir, name)
		writeFile(t, p, "data_dir: "+filepath.Join(dir, "data")+"\ninbound: {listen: 127.0.0.1:0}\nadmin: {listen: \"\"}\nkeys:\n  archive_key_file: "+file+"\n")
		return p
	}
	good := configFor("good.yaml", keyFile("archive.asc", false))
	if code, out, errOut := sealgate(t, "config", "check", good); code != 0 {
		t.Errorf("config check with a good archive key = %d\n%s%s", code, out, errOut)
	}
	for _, c := range []struct{ name, file, want string }{
		{"garbage.yaml", garbage, "garbage.yaml:5: keys.archive_key_file: " + garbage + ": certs: key refused: not an OpenPGP public key"},
		{"private.yaml", keyFile("secret.asc", true), "private.yaml:5: keys.archive_key_file: " + filepath.Join(dir, "secret.asc") + ": certs: key refused: this is a private key"},
		{"missing.yaml", filepath.Join(dir, "nope.asc"), "missing.yaml:5: keys.archive_key_file: cannot read " + filepath.Join(dir, "nope.asc")},
	} {
		cfg := configFor(c.name, c.file)
		for _, args := range [][]string{{"config", "check", cfg}, {"serve", "--config", cfg}} {
			code, _, errOut := sealgate(t, args...)
			if code != 2 || !strings.Contains(errOut, c.want) {
				t.Errorf("sealgate %s = %d\n%s\nwant 2 and %q", strings.Join(args, " "), code, errOut, c.want)
			}
		}
	}
}
