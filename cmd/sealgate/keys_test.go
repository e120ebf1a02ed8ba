package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// writeCertificate writes a self-signed S/MIME certificate for email
// (valid until notAfter) and its private key to dir, and returns the
// two files and the certificate's SHA-256 fingerprint and serial.
func writeCertificate(t *testing.T, dir, email string, notAfter time.Time) (certFile, keyFile, fp, serial string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(0x5ea1), Subject: pkix.Name{CommonName: email},
		NotBefore: notAfter.Add(-48 * time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageKeyAgreement | x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		EmailAddresses: []string{email},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(dir, email+".pem"), filepath.Join(dir, email+".key")
	writeFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})))
	sum := sha256.Sum256(der)
	return certFile, keyFile, fmt.Sprintf("%X", sum), "5EA1"
}

func TestKeysCommandsWithCertificates(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sealgate.yaml")
	writeFile(t, cfg, "data_dir: "+filepath.Join(dir, "data")+"\n")
	seedSpool(t, filepath.Join(dir, "data"))
	cert, key, fp, serial := writeCertificate(t, dir, "carol@partner.test", time.Now().Add(24*time.Hour))
	old, _, _, _ := writeCertificate(t, dir, "old@partner.test", time.Now().Add(-time.Hour))

	code, stdout, stderr := sealgate(t, "keys", "import", cert, "--config", cfg)
	if code != 0 || !strings.Contains(stdout, "imported S/MIME certificate "+fp+" serial "+serial+" (EC-P256, expires ") ||
		!strings.Contains(stdout, "for carol@partner.test") {
		t.Fatalf("keys import of a certificate: exit %d\n%s%s", code, stdout, stderr)
	}
	code, _, stderr = sealgate(t, "keys", "import", key, old, "--config", cfg)
	if code != 1 || !strings.Contains(stderr, "carol@partner.test.key: certs: key refused: this file holds a private key") ||
		!strings.Contains(stderr, "never holds their secrets") || !strings.Contains(stderr, "old@partner.test.pem: certs: key refused:") ||
		!strings.Contains(stderr, "expired on") {
		t.Errorf("keys import of a private key and an expired certificate: exit %d: %s", code, stderr)
	}

	code, stdout, _ = sealgate(t, "keys", "list", "--json", "--config", cfg)
	var keys []struct{ Address, Kind, Fingerprint, Serial, Algorithm, Source, Issuer string }
	if err := json.Unmarshal([]byte(stdout), &keys); code != 0 || err != nil || len(keys) != 1 {
		t.Fatalf("keys list --json: exit %d, %v:\n%s", code, err, stdout)
	}
	if k := keys[0]; k.Address != "carol@partner.test" || k.Kind != "smime" || k.Fingerprint != fp || k.Serial != serial ||
		k.Algorithm != "EC-P256" || k.Source != "import" || k.Issuer != "CN=carol@partner.test" {
		t.Errorf("listed certificate %+v", k)
	}
	if code, stdout, _ = sealgate(t, "keys", "list", "--config", cfg); code != 0 || !strings.Contains(stdout, "SERIAL") || !strings.Contains(stdout, serial) {
		t.Errorf("keys list:\n%s", stdout)
	}
	if code, stdout, _ = sealgate(t, "keys", "show", "Carol@partner.test", "--config", cfg); code != 0 ||
		!strings.Contains(stdout, "Fingerprint: "+fp+" (SHA-256)") || !strings.Contains(stdout, "Serial:      "+serial) {
		t.Errorf("keys show: exit %d\n%s", code, stdout)
	}

	// A serial is unique per issuer only: it removes nothing, but the
	// error names the fingerprint to use.
	if code, _, stderr = sealgate(t, "keys", "remove", serial, "--config", cfg); code != 1 || !strings.Contains(stderr, "is the serial of certificate "+fp) {
		t.Errorf("keys remove SERIAL: exit %d: %s", code, stderr)
	}
	colons := ""
	for i := 0; i < len(fp); i += 2 {
		colons += fp[i:i+2] + ":"
	}
	if code, stdout, _ = sealgate(t, "keys", "remove", strings.TrimSuffix(colons, ":"), "--config", cfg); code != 0 || !strings.Contains(stdout, "removed (1 entries)") {
		t.Errorf("keys remove AA:BB:… : exit %d\n%s", code, stdout)
	}
}
