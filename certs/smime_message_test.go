package certs

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	smimeTestText = "Hello Bob,\r\n\r\nthe signed contract is attached.\r\n"
	smimeTestHTML = "<html><body><p>Hello Bob,</p><p>the <b>signed contract</b> is attached.</p></body></html>\r\n"
)

// smimeTestMessage is a message as the tenant sends it (tag already
// removed): a text body with an HTML alternative and a binary
// attachment, and header fields that must stay outside or go inside.
func smimeTestMessage(attachment []byte) []byte {
	var att strings.Builder
	enc := base64.StdEncoding.EncodeToString(attachment)
	for len(enc) > 76 {
		att.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	att.WriteString(enc + "\r\n")
	return []byte("Received: from tenant.example by sealgate; Tue, 1 Dec 2026 10:00:00 +0000\r\n" +
		"From: Alice <alice@corp.example>\r\n" +
		"To: Bob <bob@partner.example>\r\n" +
		"Cc: carol@partner.example\r\n" +
		"Subject: Contract for\r\n the Q3 acquisition\r\n" +
		"Thread-Topic: Contract for the Q3 acquisition\r\n" +
		"Date: Tue, 1 Dec 2026 10:00:00 +0000\r\n" +
		"Message-ID: <contract-1@corp.example>\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"mixed-b\"\r\n" +
		"\r\n" +
		"This is a multi-part message in MIME format.\r\n" +
		"--mixed-b\r\n" +
		"Content-Type: multipart/alternative; boundary=\"alt-b\"\r\n" +
		"\r\n" +
		"--alt-b\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"\r\n" + smimeTestText +
		"--alt-b\r\n" +
		"Content-Type: text/html; charset=utf-8\r\n" +
		"\r\n" + smimeTestHTML +
		"--alt-b--\r\n" +
		"--mixed-b\r\n" +
		"Content-Type: application/pdf; name=\"contract.pdf\"\r\n" +
		"Content-Disposition: attachment; filename=\"contract.pdf\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n" +
		"\r\n" + att.String() +
		"--mixed-b--\r\n")
}

// smimeParts walks a decrypted entity and returns each leaf part's
// decoded body by media type.
func smimeParts(t *testing.T, entity []byte) map[string][]byte {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(entity))
	if err != nil {
		t.Fatalf("decrypted entity: %v", err)
	}
	parts := map[string][]byte{}
	var walk func(h textprotoHeader, r io.Reader)
	walk = func(h textprotoHeader, r io.Reader) {
		mediaType, params, err := mime.ParseMediaType(h.Get("Content-Type"))
		if err != nil {
			t.Fatalf("Content-Type %q: %v", h.Get("Content-Type"), err)
		}
		if strings.HasPrefix(mediaType, "multipart/") {
			mr := multipart.NewReader(r, params["boundary"])
			for {
				p, err := mr.NextRawPart()
				if err == io.EOF {
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				walk(textprotoHeader(p.Header), p)
			}
		}
		data, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		if strings.EqualFold(h.Get("Content-Transfer-Encoding"), "base64") {
			if data, err = base64.StdEncoding.DecodeString(strings.NewReplacer("\r", "", "\n", "").Replace(string(data))); err != nil {
				t.Fatal(err)
			}
		}
		parts[mediaType] = data
	}
	walk(textprotoHeader(m.Header), m.Body)
	return parts
}

type textprotoHeader map[string][]string

func (h textprotoHeader) Get(key string) string {
	for k, v := range h {
		if strings.EqualFold(k, key) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

// TestBuildSMIMEOpenSSL is the interop proof: openssl cms -decrypt reads
// our S/MIME message as each recipient, and what it returns is the
// original entity, parts byte for byte.
func TestBuildSMIMEOpenSSL(t *testing.T) {
	dir := t.TempDir()
	_, peers := smimeTestCA(t, dir, map[string]string{
		"bob@partner.example":   "rsa:2048",
		"carol@partner.example": "ec:P-256",
	})
	bob, carol := peers["bob@partner.example"], peers["carol@partner.example"]
	attachment := make([]byte, 300<<10)
	rand.Read(attachment)
	msg := smimeTestMessage(attachment)
	_, body, err := smimeSplitHeader(msg)
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name       string
		recipients []smimePeer
		opts       SMIMEOptions
	}{
		{"rsa", []smimePeer{bob}, SMIMEOptions{}},
		{"ec-p256", []smimePeer{carol}, SMIMEOptions{}},
		{"both", []smimePeer{bob, carol}, SMIMEOptions{}},
		{"both-oaep", []smimePeer{bob, carol}, SMIMEOptions{RSATransport: SMIMERSAOAEP}},
		{"both-gcm", []smimePeer{bob, carol}, SMIMEOptions{Cipher: SMIMEAES256GCM}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var certs []*x509.Certificate
			for _, p := range tc.recipients {
				certs = append(certs, p.cert)
			}
			out, err := BuildSMIME(msg, certs, "Encrypted message", tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			smimeCheckOuter(t, out, tc.opts)
			fullB64Lines := 0
			for _, line := range bytes.Split(body, []byte("\r\n")) {
				if len(line) == 76 { // the attachment's base64: a sample is enough
					if fullB64Lines++; fullB64Lines > 20 {
						continue
					}
				}
				if len(line) >= 8 && bytes.Contains(out, line) && string(line) != "Content-Transfer-Encoding: base64" {
					t.Fatalf("original line %q readable in the message as sent", line)
				}
			}
			path := filepath.Join(dir, tc.name+".eml")
			if err := os.WriteFile(path, out, 0o600); err != nil {
				t.Fatal(err)
			}
			for _, peer := range tc.recipients {
				entity := smimeDecrypt(t, dir, peer, path)
				if !bytes.HasSuffix(entity, body) {
					t.Fatalf("%s: decrypted body differs from the original", peer.cert.EmailAddresses[0])
				}
				parts := smimeParts(t, entity)
				// The CRLF before a boundary belongs to the boundary (RFC 2046 §5.1.1).
				if got := string(parts["text/plain"]) + "\r\n"; got != smimeTestText {
					t.Errorf("text part = %q", got)
				}
				if got := string(parts["text/html"]) + "\r\n"; got != smimeTestHTML {
					t.Errorf("html part = %q", got)
				}
				if sha256.Sum256(parts["application/pdf"]) != sha256.Sum256(attachment) {
					t.Errorf("attachment hash differs (%d bytes, want %d)", len(parts["application/pdf"]), len(attachment))
				}
				inner, err := mail.ReadMessage(bytes.NewReader(entity))
				if err != nil {
					t.Fatal(err)
				}
				for name, want := range map[string]string{
					"Subject":      "Contract for the Q3 acquisition",
					"Thread-Topic": "Contract for the Q3 acquisition",
					"From":         "Alice <alice@corp.example>",
					"Message-Id":   "<contract-1@corp.example>",
					"Received":     "",
					"Mime-Version": "",
				} {
					if got := inner.Header.Get(name); got != want {
						t.Errorf("inner %s = %q, want %q", name, got, want)
					}
				}
				if _, params, _ := mime.ParseMediaType(inner.Header.Get("Content-Type")); params["hp"] != "cipher" || params["boundary"] != "mixed-b" {
					t.Errorf("inner Content-Type = %q", inner.Header.Get("Content-Type"))
				}
			}
		})
	}
}

// smimeCheckOuter checks what anyone on the way sees: the kept header
// fields, the placeholder, the S/MIME body, and nothing of the original.
func smimeCheckOuter(t *testing.T, out []byte, opts SMIMEOptions) {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	smimeType := "enveloped-data"
	if opts.Cipher == SMIMEAES256GCM {
		smimeType = "authEnveloped-data"
	}
	for name, want := range map[string]string{
		"From":                      "Alice <alice@corp.example>",
		"To":                        "Bob <bob@partner.example>",
		"Cc":                        "carol@partner.example",
		"Date":                      "Tue, 1 Dec 2026 10:00:00 +0000",
		"Message-Id":                "<contract-1@corp.example>",
		"Received":                  "from tenant.example by sealgate; Tue, 1 Dec 2026 10:00:00 +0000",
		"Subject":                   "Encrypted message",
		"Thread-Topic":              "",
		"Mime-Version":              "1.0",
		"Content-Type":              "application/pkcs7-mime; smime-type=" + smimeType + "; name=smime.p7m",
		"Content-Disposition":       "attachment; filename=smime.p7m",
		"Content-Transfer-Encoding": "base64",
	} {
		if got := m.Header.Get(name); got != want {
			t.Errorf("outer %s = %q, want %q", name, got, want)
		}
	}
	for _, secret := range []string{"signed contract", "Q3 acquisition", "contract.pdf", "mixed-b"} {
		if bytes.Contains(out, []byte(secret)) {
			t.Errorf("%q readable in the message as sent", secret)
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Split(smimeScanCRLFLines)
	inBody := false
	for n := 1; sc.Scan(); n++ {
		// RFC 2045 §6.8: base64 lines of at most 76 characters; RFC 5322
		// §2.1.1: header lines of at most 78.
		if limit := map[bool]int{false: 78, true: 76}[inBody]; len(sc.Bytes()) > limit {
			t.Fatalf("line %d is %d characters long", n, len(sc.Bytes()))
		}
		inBody = inBody || len(sc.Bytes()) == 0
	}
	if bytes.Contains(bytes.ReplaceAll(out, []byte("\r\n"), nil), []byte("\n")) {
		t.Fatal("bare LF in the message")
	}
}

func smimeScanCRLFLines(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.Index(data, []byte("\r\n")); i >= 0 {
		return i + 2, data[:i], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

func TestBuildSMIMEHeaderEdges(t *testing.T) {
	cert := smimeTestCert(t, smimeCertSpec{})
	for _, tc := range []struct {
		name, msg, placeholder string
		wantErr                error
		wantIn, wantOut        []string
	}{
		{name: "no body, no subject, no content type", msg: "From: a@corp.example\r\nTo: b@partner.example\r\n",
			wantOut: []string{"Subject: [...]\r\n", "From: a@corp.example\r\n"}},
		{name: "non-ASCII placeholder", msg: "Subject: x\r\n\r\nbody\r\n", placeholder: "Verschlüsselte Nachricht",
			wantOut: []string{"Subject: =?utf-8?q?Verschl=C3=BCsselte_Nachricht?=\r\n"}},
		{name: "header injection", msg: "Subject: x\r\n\r\nbody\r\n", placeholder: "x\r\nBcc: eve@evil.example",
			wantErr: errors.New("control character")},
		{name: "bare LF", msg: "Subject: x\nFrom: a@corp.example\r\n\r\nbody\r\n", wantErr: ErrSMIMEMalformedMessage},
		{name: "no colon", msg: "Subject x\r\n\r\nbody\r\n", wantErr: ErrSMIMEMalformedMessage},
		{name: "leading fold", msg: " folded\r\nSubject: x\r\n\r\nbody\r\n", wantErr: ErrSMIMEMalformedMessage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := BuildSMIME([]byte(tc.msg), []*x509.Certificate{cert}, tc.placeholder, SMIMEOptions{})
			if tc.wantErr != nil {
				if err == nil || !errors.Is(err, tc.wantErr) && !strings.Contains(err.Error(), tc.wantErr.Error()) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range tc.wantOut {
				if !bytes.Contains(out, []byte(want)) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

func TestSMIMEMarkProtected(t *testing.T) {
	for raw, want := range map[string]string{
		"Content-Type: text/plain\r\n":                       "Content-Type: text/plain;\r\n hp=\"cipher\"\r\n",
		"Content-Type: multipart/mixed;\r\n boundary=b;\r\n": "Content-Type: multipart/mixed;\r\n boundary=b;\r\n hp=\"cipher\"\r\n",
		"Content-Type: text/plain; hp=\"cipher\"\r\n":        "Content-Type: text/plain; hp=\"cipher\"\r\n",
	} {
		if got := string(smimeMarkProtected([]byte(raw))); got != want {
			t.Errorf("%q: got %q, want %q", raw, got, want)
		}
	}
}
