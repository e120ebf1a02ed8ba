package gateway_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"mime"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/sealgate/sealgate/gateway/admin"
	"github.com/sealgate/sealgate/internal/testutil"
	"github.com/sealgate/sealgate/queue"
)

// needOpenSSL returns the openssl command, skipping the test when it is
// missing — except in CI, which must have it (.ci/run installs openssl).
func needOpenSSL(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("openssl is not installed; .ci/run installs it, and CI must run the S/MIME interop tests")
		}
		t.Skip("openssl is not installed: the S/MIME interop test needs it (apt-get install openssl)")
	}
	return path
}

// opensslPeer is an S/MIME recipient whose key and certificate the
// openssl command line made: the private key never passes through
// sealgate.
type opensslPeer struct {
	cert, key string // file paths
}

// opensslRun runs openssl in dir and returns its output.
func opensslRun(t *testing.T, dir string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(needOpenSSL(t), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// newOpenSSLPeer makes a key ("rsa:2048", "ec:P-256") and a certificate
// for addr issued by a CA openssl also made in dir: rfc822Name, the key
// usage the algorithm needs, emailProtection.
func newOpenSSLPeer(t *testing.T, dir, addr, spec string) opensslPeer {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, "ca.pem")); err != nil {
		opensslRun(t, dir, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
			"-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=partner SMIME CA")
	}
	name := strings.NewReplacer("@", "_", ".", "_").Replace(addr)
	keyArgs, usage := []string{"-newkey", spec}, "keyEncipherment"
	if curve, ok := strings.CutPrefix(spec, "ec:"); ok {
		keyArgs, usage = []string{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:" + curve}, "keyAgreement"
	}
	ext := "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature," + usage +
		"\nextendedKeyUsage=emailProtection\nsubjectAltName=email:" + addr + "\n"
	if err := os.WriteFile(filepath.Join(dir, name+".ext"), []byte(ext), 0o600); err != nil {
		t.Fatal(err)
	}
	opensslRun(t, dir, append(append([]string{"req", "-new"}, keyArgs...),
		"-nodes", "-keyout", name+".key", "-out", name+".csr", "-subj", "/CN="+addr)...)
	opensslRun(t, dir, "x509", "-req", "-in", name+".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
		"-days", "1", "-extfile", name+".ext", "-out", name+".pem")
	return opensslPeer{cert: filepath.Join(dir, name+".pem"), key: filepath.Join(dir, name+".key")}
}

func TestSMIMEInteropWithOpenSSL(t *testing.T) {
	needOpenSSL(t)
	dir := t.TempDir()
	bob := newOpenSSLPeer(t, dir, "bob@dest.test", "rsa:2048")
	carol := newOpenSSLPeer(t, dir, "carol@dest.test", "ec:P-256")

	e := newE2E(t, "")
	sink := e.destination("dest.test", "127.0.0.2", testutil.SinkOptions{TLS: true, CA: e.ca})
	tok, err := admin.ReadToken(e.gw.Config().AdminTokenFile())
	if err != nil {
		t.Fatal(err)
	}
	keys := admin.NewAdminClient(e.gw.AdminAddr(), tok)
	serials := map[string]string{}
	for _, p := range []opensslPeer{bob, carol} {
		pemData, err := os.ReadFile(p.cert)
		if err != nil {
			t.Fatal(err)
		}
		added, err := keys.ImportKeys(pemData)
		if err != nil || len(added) != 1 || added[0].Kind != "smime" {
			t.Fatalf("import of a certificate openssl made: %+v, %v", added, err)
		}
		serials[added[0].Address] = added[0].Serial + " fingerprint " + added[0].Fingerprint
		// The key store names the certificate as openssl does.
		out := string(opensslRun(t, dir, "x509", "-in", p.cert, "-noout", "-serial"))
		if strings.TrimSpace(out) != "serial="+added[0].Serial {
			t.Errorf("serial %s, openssl says %s", added[0].Serial, out)
		}
	}

	pdf := pdfBytes()
	orig := strings.Replace(labMessage(pdf), "Subject: [secure] Lab results\r\n", "Subject: [secure] Results\r\n", 1)
	id := e.send("alice@org.test", []string{"bob@dest.test", "carol@dest.test"}, orig)
	e.waitState(id, "bob@dest.test", queue.StateDelivered)
	m := e.waitState(id, "carol@dest.test", queue.StateDelivered)
	// The default escalation [pgp, smime, escrow]: no OpenPGP key, so
	// smime, and the record says so and names the certificates.
	if !hasEvent(m, "skipped", "method pgp skipped: no OpenPGP key for bob@dest.test") {
		t.Errorf("history does not say why pgp was skipped: %+v", m.Events)
	}
	att := lastAttempt(m)
	if att == nil || !strings.HasPrefix(att.Protection, "smime: S/MIME enveloped-data, aes256-cbc encrypted to ") ||
		!strings.Contains(att.Protection, "bob@dest.test certificate serial "+serials["bob@dest.test"]+" (RSA-2048, rsaes-pkcs1-v1_5)") ||
		!strings.Contains(att.Protection, "carol@dest.test certificate serial "+serials["carol@dest.test"]+" (EC-P256, ECDH key agreement") {
		t.Errorf("the attempt record does not name the certificates: %+v", att)
	}
	got := sink.WaitMessages(t, 1, 20*time.Second)[0]
	outer := checkEncryptedOuter(t, got)
	mt, params, _ := mime.ParseMediaType(outer.Header.Get("Content-Type"))
	if mt != "application/pkcs7-mime" || params["smime-type"] != "enveloped-data" || params["name"] != "smime.p7m" {
		t.Fatalf("outer Content-Type %q", outer.Header.Get("Content-Type"))
	}
	_, origBody, _ := strings.Cut(orig, "\r\n\r\n")
	for _, line := range strings.Split(origBody, "\r\n") {
		// The S/MIME body itself is base64: that one line is the outer
		// entity's own, not the attachment's.
		if len(line) >= 8 && bytes.Contains(got.Data, []byte(line)) && line != "Content-Transfer-Encoding: base64" {
			t.Errorf("a line of the original is readable in the delivered bytes: %q", line)
		}
	}
	for _, word := range []string{"Results", "haemoglobin", "panel.pdf"} {
		if bytes.Contains(got.Data, []byte(word)) {
			t.Errorf("%q is readable in the delivered bytes", word)
		}
	}

	delivered := filepath.Join(dir, "delivered.eml")
	if err := os.WriteFile(delivered, got.Data, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []opensslPeer{bob, carol} {
		out := filepath.Join(dir, filepath.Base(p.key)+".out")
		opensslRun(t, dir, "cms", "-decrypt", "-in", delivered, "-recip", p.cert, "-inkey", p.key, "-out", out)
		plain, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		checkDecryptedEntity(t, plain, origBody, pdf, "Results", "hp", "cipher")
	}
}

// goCertificate is a self-signed S/MIME certificate for addr, PEM, made
// in Go: the chain test needs the key store, not openssl.
func goCertificate(t *testing.T, addr string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: addr},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageKeyAgreement, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		EmailAddresses: []string{addr},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// goOpenPGPKey is an armored OpenPGP public key for addr, made in Go.
func goOpenPGPKey(t *testing.T, addr string) []byte {
	t.Helper()
	e, err := openpgp.NewEntity("", "", addr, &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	w, err := armor.Encode(&out, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Serialize(w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return out.Bytes()
}

// TestChainPGPThenSMIMEThenEscrow runs one message through the chain
// [pgp, smime, escrow] to three destinations: one whose recipient has
// an OpenPGP key (and a certificate too: the chain's order decides),
// one whose recipient has only a certificate, one whose recipient has
// neither (escrow is not provided yet: held, with every reason on
// record).
func TestChainPGPThenSMIMEThenEscrow(t *testing.T) {
	e := newE2E(t, `policy:
  rules:
    - name: partners-encrypted
      match: {to: [pgp.test, smime.test, none.test]}
      chain: [pgp, smime, escrow]
`)
	pgpBox := e.destination("pgp.test", "127.0.0.2", testutil.SinkOptions{TLS: true, CA: e.ca})
	smimeBox := e.destination("smime.test", "127.0.0.3", testutil.SinkOptions{TLS: true, CA: e.ca})
	noneBox := e.destination("none.test", "127.0.0.4", testutil.SinkOptions{TLS: true, CA: e.ca})
	for _, material := range [][]byte{goOpenPGPKey(t, "bob@pgp.test"), goCertificate(t, "bob@pgp.test"), goCertificate(t, "carol@smime.test")} {
		if _, err := e.gw.Keys().ImportKeys(material); err != nil {
			t.Fatal(err)
		}
	}

	id := e.send("alice@org.test", []string{"bob@pgp.test", "carol@smime.test", "dave@none.test"},
		message("Quarterly figures", "Revenue is up 12 percent."))
	m := e.waitState(id, "bob@pgp.test", queue.StateDelivered)
	m = e.waitState(id, "carol@smime.test", queue.StateDelivered)
	m = e.waitAttempts(id, "dave@none.test", 1)
	m = e.waitState(id, "dave@none.test", queue.StateDeferred)

	protection := map[string]string{}
	for _, ev := range m.Events {
		if ev.Attempt != nil {
			for _, r := range ev.Attempt.Recipients {
				protection[r] = ev.Attempt.Protection
			}
		}
	}
	if p := protection["bob@pgp.test"]; !strings.HasPrefix(p, "pgp: PGP/MIME encrypted to bob@pgp.test key ") {
		t.Errorf("bob (OpenPGP key and certificate): %q, want pgp, the first method of the chain", p)
	}
	if p := protection["carol@smime.test"]; !strings.HasPrefix(p, "smime: S/MIME enveloped-data, aes256-cbc encrypted to carol@smime.test certificate serial ") {
		t.Errorf("carol (certificate only): %q, want smime", p)
	}
	if !hasEvent(m, "skipped", "carol@smime.test: method pgp skipped: no OpenPGP key for carol@smime.test") {
		t.Errorf("history does not say why pgp was skipped for carol: %+v", m.Events)
	}
	for _, want := range []string{
		"dave@none.test: method pgp skipped: no OpenPGP key for dave@none.test",
		"dave@none.test: method smime skipped: no S/MIME certificate for dave@none.test",
	} {
		if !hasEvent(m, "skipped", want) {
			t.Errorf("history lacks %q: %+v", want, m.Events)
		}
	}
	for _, r := range m.Recipients {
		if r.Address == "dave@none.test" && (r.Method() != "escrow" || r.Status != "4.7.0" || !strings.Contains(r.LastError, "needs escrow, which this gateway does not provide")) {
			t.Errorf("dave: %+v, want held at escrow as not provided", r)
		}
	}

	if got := pgpBox.WaitMessages(t, 1, 20*time.Second)[0]; !bytes.Contains(got.Data, []byte("multipart/encrypted; protocol=\"application/pgp-encrypted\"")) ||
		bytes.Contains(got.Data, []byte("Revenue")) {
		t.Errorf("pgp.test did not get PGP/MIME:\n%s", got.Data)
	}
	if got := smimeBox.WaitMessages(t, 1, 20*time.Second)[0]; !bytes.Contains(got.Data, []byte("application/pkcs7-mime; smime-type=enveloped-data")) ||
		bytes.Contains(got.Data, []byte("Revenue")) {
		t.Errorf("smime.test did not get S/MIME:\n%s", got.Data)
	}
	if n := len(noneBox.Messages()); n != 0 {
		t.Errorf("none.test got %d messages; a recipient without key or certificate must be held", n)
	}
}
