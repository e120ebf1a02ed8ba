package gateway_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/gateway/admin"
	"github.com/sealgate/sealgate/internal/testutil"
	"github.com/sealgate/sealgate/queue"
)

// gnupg is one GnuPG home with one key pair in it, made by gpg itself.
type gnupg struct {
	t    *testing.T
	home string
}

// needGPG skips the test when gpg is missing, except in CI, which must
// have it (.ci/run installs gnupg).
func needGPG(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("gpg"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("gpg is not installed; .ci/run installs gnupg, and CI must run the OpenPGP interop tests")
		}
		t.Skip("gpg is not installed: the OpenPGP interop test needs GnuPG (apt-get install gnupg)")
	}
}

// newGnuPG makes a key for uid with algo ("ed25519", "rsa3072") as
// gpg --quick-gen-key does it, and, unless signOnly, an encryption
// subkey (cv25519 for ed25519, the same RSA size otherwise).
func newGnuPG(t *testing.T, uid, algo string, signOnly bool) *gnupg {
	t.Helper()
	// A short path: gpg-agent's socket path must fit in sun_path.
	home, err := os.MkdirTemp("", "sg-gpg")
	if err != nil {
		t.Fatal(err)
	}
	g := &gnupg{t: t, home: home}
	t.Cleanup(func() {
		exec.Command("gpgconf", "--homedir", home, "--kill", "gpg-agent").Run()
		os.RemoveAll(home)
	})
	g.run(nil, "--quick-gen-key", uid, algo, "default", "never")
	if !signOnly {
		sub := algo
		if algo == "ed25519" {
			sub = "cv25519"
		}
		g.run(nil, "--quick-add-key", g.fingerprint(), sub, "encr", "never")
	}
	return g
}

func (g *gnupg) run(stdin []byte, args ...string) []byte {
	g.t.Helper()
	out, stderr, err := g.try(stdin, args...)
	if err != nil {
		g.t.Fatalf("gpg %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return out
}

func (g *gnupg) try(stdin []byte, args ...string) (stdout, stderr []byte, err error) {
	cmd := exec.Command("gpg", append([]string{"--homedir", g.home, "--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", ""}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.Bytes(), errOut.Bytes(), err
}

func (g *gnupg) fingerprint() string {
	for _, line := range strings.Split(string(g.run(nil, "--with-colons", "--list-keys")), "\n") {
		if f := strings.Split(line, ":"); f[0] == "fpr" {
			return f[9]
		}
	}
	g.t.Fatal("gpg lists no fingerprint")
	return ""
}

func (g *gnupg) export() []byte { return g.run(nil, "--armor", "--export") }

// labMessage is a message as Outlook sends one: text with an HTML
// alternative and a PDF attachment.
func labMessage(pdf []byte) string {
	var b64 strings.Builder
	enc := base64.StdEncoding.EncodeToString(pdf)
	for len(enc) > 76 {
		b64.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b64.WriteString(enc + "\r\n")
	return "From: Alice <alice@org.test>\r\n" +
		"To: Bob <bob@dest.test>, Carol <carol@dest.test>\r\n" +
		"Subject: [secure] Lab results\r\n" +
		"Date: Mon, 02 Mar 2026 09:00:00 +0000\r\n" +
		"Message-ID: <lab-results@org.test>\r\n" +
		"Thread-Topic: Lab results\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"outer-b\"\r\n" +
		"\r\n" +
		"--outer-b\r\n" +
		"Content-Type: multipart/alternative; boundary=\"alt-b\"\r\n" +
		"\r\n" +
		"--alt-b\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"\r\n" +
		"Dear Bob, the haemoglobin result is 13.2 g/dL.\r\n" +
		"Please find the full panel attached.\r\n" +
		"--alt-b\r\n" +
		"Content-Type: text/html; charset=utf-8\r\n" +
		"\r\n" +
		"<p>Dear Bob, the <b>haemoglobin</b> result is 13.2 g/dL.</p>\r\n" +
		"--alt-b--\r\n" +
		"--outer-b\r\n" +
		"Content-Type: application/pdf; name=\"panel.pdf\"\r\n" +
		"Content-Disposition: attachment; filename=\"panel.pdf\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n" +
		"\r\n" +
		b64.String() +
		"--outer-b--\r\n"
}

func pdfBytes() []byte {
	pdf := []byte("%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\n")
	for i := range 3000 {
		pdf = append(pdf, byte(i*7), byte(i>>3), 0, '\r', '\n')
	}
	return append(pdf, "%%EOF\n"...)
}

func TestPGPInteropWithGnuPG(t *testing.T) {
	needGPG(t)
	bob := newGnuPG(t, "Bob <bob@dest.test>", "ed25519", false)
	carol := newGnuPG(t, "Carol <carol@dest.test>", "rsa3072", false)
	signOnly := newGnuPG(t, "Dave <dave@dest.test>", "ed25519", true)

	e := newE2E(t, "")
	sink := e.destination("dest.test", "127.0.0.2", testutil.SinkOptions{TLS: true, CA: e.ca})
	tok, err := admin.ReadToken(e.gw.Config().AdminTokenFile())
	if err != nil {
		t.Fatal(err)
	}
	keys := admin.NewAdminClient(e.gw.AdminAddr(), tok)
	for _, g := range []*gnupg{bob, carol} {
		if _, err := keys.ImportKeys(g.export()); err != nil {
			t.Fatalf("import of a key gpg made: %v", err)
		}
	}
	// gpg --quick-gen-key with ed25519 makes a signing key only.
	if _, err := keys.ImportKeys(signOnly.export()); !errors.Is(err, certs.ErrBadKey) || !strings.Contains(err.Error(), "encryption-capable") {
		t.Errorf("import of a sign-only key: %v", err)
	}

	pdf := pdfBytes()
	orig := labMessage(pdf)
	id := e.send("alice@org.test", []string{"bob@dest.test", "carol@dest.test"}, orig)
	e.waitState(id, "bob@dest.test", queue.StateDelivered)
	m := e.waitState(id, "carol@dest.test", queue.StateDelivered)
	if att := lastAttempt(m); att == nil || !strings.Contains(att.Protection, "pgp: PGP/MIME encrypted to bob@dest.test key "+bob.fingerprint()) ||
		!strings.Contains(att.Protection, "carol@dest.test key "+carol.fingerprint()+" (RSA-3072)") {
		t.Errorf("the attempt record does not name the keys: %+v", att)
	}
	got := sink.WaitMessages(t, 1, 20*time.Second)[0]
	outer := checkEncryptedOuter(t, got)
	mt, params, _ := mime.ParseMediaType(outer.Header.Get("Content-Type"))
	if mt != "multipart/encrypted" || params["protocol"] != "application/pgp-encrypted" {
		t.Fatalf("outer Content-Type %q", outer.Header.Get("Content-Type"))
	}
	_, origBody, _ := strings.Cut(orig, "\r\n\r\n")
	for _, line := range strings.Split(origBody, "\r\n") {
		if len(line) >= 8 && bytes.Contains(got.Data, []byte(line)) {
			t.Errorf("a line of the original is readable in the delivered bytes: %q", line)
		}
	}
	for _, word := range []string{"Lab results", "haemoglobin", "panel.pdf"} {
		if bytes.Contains(got.Data, []byte(word)) {
			t.Errorf("%q is readable in the delivered bytes", word)
		}
	}

	// RFC 3156 §4: the version part, then the encrypted part.
	mr := multipart.NewReader(outer.Body, params["boundary"])
	version, err := mr.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	vb, _ := io.ReadAll(version)
	if version.Header.Get("Content-Type") != "application/pgp-encrypted" || !strings.Contains(string(vb), "Version: 1") {
		t.Errorf("version part %v %q", version.Header, vb)
	}
	encPart, err := mr.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	armored, _ := io.ReadAll(encPart)
	if !strings.HasPrefix(encPart.Header.Get("Content-Type"), "application/octet-stream") || !bytes.Contains(armored, []byte("-----BEGIN PGP MESSAGE-----")) {
		t.Fatalf("encrypted part %v:\n%s", encPart.Header, armored)
	}

	for _, g := range []*gnupg{bob, carol} {
		plain, status, err := g.try(armored, "--status-fd", "2", "--decrypt")
		if err != nil {
			t.Fatalf("gpg --decrypt: %v\n%s", err, status)
		}
		t.Logf("gpg --decrypt status:\n%s", status)
		// DECRYPTION_INFO <mdc method> <cipher>: 9 is AES-256, and a
		// message without integrity protection would not decrypt okay.
		if !bytes.Contains(status, []byte("[GNUPG:] DECRYPTION_OKAY")) || !bytes.Contains(status, []byte("[GNUPG:] DECRYPTION_INFO 2 9")) {
			t.Errorf("gpg status:\n%s", status)
		}
		checkDecryptedEntity(t, plain, origBody, pdf, "Lab results", "protected-headers", "v1")
	}
}

// checkDecryptedEntity checks that the decrypted entity is the original
// message — its body byte for byte, the attachment by hash — with the
// protected headers: the Subject without its tag, and the header
// protection marker of the format (PGP/MIME protected-headers=v1,
// S/MIME hp=cipher of RFC 9788).
func checkDecryptedEntity(t *testing.T, plain []byte, origBody string, pdf []byte, subject, markerParam, markerValue string) {
	t.Helper()
	inner, err := mail.ReadMessage(bytes.NewReader(plain))
	if err != nil {
		t.Fatalf("decrypted entity: %v\n%s", err, plain)
	}
	if s := inner.Header.Get("Subject"); s != subject {
		t.Errorf("protected Subject %q, want the original without its tag", s)
	}
	if inner.Header.Get("From") != "Alice <alice@org.test>" || inner.Header.Get("Message-ID") != "<lab-results@org.test>" {
		t.Errorf("protected headers: %v", inner.Header)
	}
	mt, params, err := mime.ParseMediaType(inner.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" || params[markerParam] != markerValue {
		t.Errorf("inner Content-Type %q", inner.Header.Get("Content-Type"))
	}
	body, _ := io.ReadAll(inner.Body)
	if string(body) != origBody {
		t.Errorf("decrypted body differs from the original")
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	var parts []string
	for {
		p, err := mr.NextPart()
		if err != nil {
			break
		}
		ct := p.Header.Get("Content-Type")
		parts = append(parts, ct)
		if strings.HasPrefix(ct, "application/pdf") {
			data, _ := io.ReadAll(base64.NewDecoder(base64.StdEncoding, p))
			if sha256.Sum256(data) != sha256.Sum256(pdf) {
				t.Error("the attachment's hash differs after decryption")
			}
		}
	}
	if len(parts) != 2 {
		t.Errorf("decrypted entity parts %v, want the alternative and the PDF", parts)
	}
}

func TestPGPChainFallsBackWithoutKey(t *testing.T) {
	needGPG(t)
	bob := newGnuPG(t, "Bob <bob@dest.test>", "ed25519", false)
	e := newE2E(t, `policy:
  rules:
    - name: partners-pgp
      match: {to: [dest.test]}
      chain: [pgp, tls]
`)
	sink := e.destination("dest.test", "127.0.0.2", testutil.SinkOptions{TLS: true, CA: e.ca})
	if _, err := e.gw.Keys().ImportKeys(bob.export()); err != nil {
		t.Fatal(err)
	}

	withKey := e.send("alice@org.test", []string{"bob@dest.test"}, message("with key", "Patient letter follows."))
	e.waitState(withKey, "bob@dest.test", queue.StateDelivered)
	first := sink.WaitMessages(t, 1, 20*time.Second)[0]
	if !bytes.Contains(first.Data, []byte("multipart/encrypted")) || bytes.Contains(first.Data, []byte("Patient letter")) {
		t.Errorf("with a key, the message did not leave encrypted:\n%s", first.Data)
	}

	noKey := e.send("alice@org.test", []string{"carol@dest.test"}, message("no key", "Meeting at noon."))
	m := e.waitState(noKey, "carol@dest.test", queue.StateDelivered)
	if !hasEvent(m, "skipped", "carol@dest.test: method pgp skipped: no OpenPGP key for carol@dest.test") {
		t.Errorf("history does not say why pgp was skipped: %+v", m.Events)
	}
	second := sink.WaitMessages(t, 2, 20*time.Second)[1]
	if !bytes.Contains(second.Data, []byte("Meeting at noon.")) {
		t.Errorf("without a key, the chain's tls step should deliver as is:\n%s", second.Data)
	}
}

// TestPGPArchiveKey: with keys.archive_key_file, every PGP/MIME message
// is also encrypted to the organisation's archive key — gpg holding only
// that key decrypts it — and the attempt record says so.
func TestPGPArchiveKey(t *testing.T) {
	needGPG(t)
	bob := newGnuPG(t, "Bob <bob@dest.test>", "ed25519", false)
	archive := newGnuPG(t, "Org.test archive", "rsa3072", false)
	archiveFile := filepath.Join(t.TempDir(), "archive.asc")
	if err := os.WriteFile(archiveFile, archive.export(), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newE2E(t, "keys:\n  archive_key_file: "+archiveFile+"\n")
	sink := e.destination("dest.test", "127.0.0.2", testutil.SinkOptions{TLS: true, CA: e.ca})
	if _, err := e.gw.Keys().ImportKeys(bob.export()); err != nil {
		t.Fatal(err)
	}

	pdf := pdfBytes()
	orig := labMessage(pdf)
	id := e.send("alice@org.test", []string{"bob@dest.test"}, orig)
	m := e.waitState(id, "bob@dest.test", queue.StateDelivered)
	if att := lastAttempt(m); att == nil || !strings.Contains(att.Protection, "bob@dest.test key "+bob.fingerprint()) ||
		!strings.Contains(att.Protection, "the organisation archive key "+archive.fingerprint()+" (RSA-3072)") {
		t.Errorf("the attempt record does not name the archive key: %+v", att)
	}
	got := sink.WaitMessages(t, 1, 20*time.Second)[0]
	i := bytes.Index(got.Data, []byte("-----BEGIN PGP MESSAGE-----"))
	j := bytes.Index(got.Data, []byte("-----END PGP MESSAGE-----"))
	if i < 0 || j < i {
		t.Fatalf("no armored message in:\n%s", got.Data)
	}
	armored := got.Data[i : j+len("-----END PGP MESSAGE-----\r\n")]
	_, origBody, _ := strings.Cut(orig, "\r\n\r\n")
	for _, g := range []*gnupg{bob, archive} {
		plain, status, err := g.try(armored, "--status-fd", "2", "--decrypt")
		if err != nil {
			t.Fatalf("gpg --decrypt: %v\n%s", err, status)
		}
		checkDecryptedEntity(t, plain, origBody, pdf, "Lab results", "protected-headers", "v1")
	}
}

// checkEncryptedOuter checks what is outside an encrypted message as it
// arrived: over TLS, one form for the whole group, the placeholder
// Subject, the routing fields kept, no Thread-Topic; it returns the
// outer message.
func checkEncryptedOuter(t *testing.T, got testutil.SinkMessage) *mail.Message {
	t.Helper()
	if got.TLS == "" {
		t.Error("the encrypted message left without TLS although the destination offers it")
	}
	if len(got.To) != 2 {
		t.Errorf("one encrypted form for the group expected, got recipients %v", got.To)
	}
	outer, err := mail.ReadMessage(bytes.NewReader(got.Data))
	if err != nil {
		t.Fatal(err)
	}
	if s := outer.Header.Get("Subject"); s != "Encrypted message" {
		t.Errorf("outer Subject %q, want the placeholder", s)
	}
	for _, h := range []string{"From", "To", "Date", "Message-ID"} {
		if outer.Header.Get(h) == "" {
			t.Errorf("outer header lost %s", h)
		}
	}
	if outer.Header.Get("Thread-Topic") != "" {
		t.Error("Thread-Topic (the Subject again) left in clear")
	}
	return outer
}
