package seal

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// clearText stands in for encryption so the test can read the entity.
// Like armor, it writes LF line ends (pgpMIME makes them CRLF again).
func clearText(w io.Writer) (io.WriteCloser, error) { return lfWriter{w}, nil }

type lfWriter struct{ w io.Writer }

func (l lfWriter) Write(p []byte) (int, error) {
	_, err := l.w.Write(bytes.ReplaceAll(p, []byte("\r\n"), []byte("\n")))
	return len(p), err
}

func (lfWriter) Close() error { return nil }

func TestPGPMIMEMovesContentAndSubjectInside(t *testing.T) {
	cases := []struct {
		name, in             string
		outer, notOuter      []string
		inner                []string
		innerBody            string
		subjectAfterReceived bool
	}{
		{
			name: "folded fields, multipart",
			in: "Received: from a\r\n\tby b\r\nFrom: a@org.test\r\nSubject: Lab\r\n results\r\nTo: b@dest.test\r\n" +
				"MIME-Version: 1.0\r\nContent-Type: multipart/mixed;\r\n boundary=\"x\"\r\nThread-Topic: Lab results\r\n\r\n--x\r\n\r\nhi\r\n--x--\r\n",
			outer:     []string{"Received: from a\r\n\tby b\r\n", "From: a@org.test\r\n", "Subject: Encrypted message\r\nTo: b@dest.test\r\n", "MIME-Version: 1.0\r\nContent-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";"},
			notOuter:  []string{"Lab", "boundary=\"x\""},
			inner:     []string{"Subject: Lab\r\n results\r\n", "From: a@org.test\r\n", "To: b@dest.test\r\n", "Content-Type: multipart/mixed;\r\n boundary=\"x\";\r\n protected-headers=\"v1\"\r\n", "Thread-Topic: Lab results\r\n"},
			innerBody: "--x\r\n\r\nhi\r\n--x--\r\n",
		},
		{
			name:      "no Content-Type, no Subject",
			in:        "From: a@org.test\r\n\r\nplain\r\n",
			outer:     []string{"From: a@org.test\r\nSubject: Encrypted message\r\nMIME-Version: 1.0\r\n"},
			inner:     []string{"Content-Type: text/plain; charset=us-ascii; protected-headers=\"v1\"\r\n"},
			innerBody: "plain\r\n",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := pgpMIME([]byte(c.in), "Encrypted message", clearText)
			if err != nil {
				t.Fatal(err)
			}
			head, rest, _ := bytes.Cut(out, []byte("\r\n\r\n"))
			for _, want := range c.outer {
				if !bytes.Contains(append(head, "\r\n"...), []byte(want)) {
					t.Errorf("outer header lacks %q:\n%s", want, head)
				}
			}
			for _, not := range c.notOuter {
				if bytes.Contains(head, []byte(not)) {
					t.Errorf("outer header has %q:\n%s", not, head)
				}
			}
			_, entity, _ := bytes.Cut(rest, []byte("filename=\"encrypted.asc\"\r\n\r\n"))
			entity, _, _ = bytes.Cut(entity, []byte("\r\n--sealgate-pgp-"))
			innerHead, innerBody, _ := strings.Cut(string(entity)+"\r\n", "\r\n\r\n")
			for _, want := range c.inner {
				if !strings.Contains(innerHead+"\r\n", want) {
					t.Errorf("inner header lacks %q:\n%s", want, innerHead)
				}
			}
			if strings.Contains(innerHead, "MIME-Version") {
				t.Error("MIME-Version copied inside")
			}
			if innerBody != c.innerBody+"\r\n" {
				t.Errorf("inner body %q, want %q", innerBody, c.innerBody)
			}
		})
	}
}

func TestPlaceholderSubjectEncoding(t *testing.T) {
	if got := encodeSubject("Nachricht verschlüsselt"); got != "=?utf-8?q?Nachricht_verschl=C3=BCsselt?=" {
		t.Errorf("encoded %q", got)
	}
}
