package policy

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/config"
)

func TestScanBodyTextPartsAndAttachments(t *testing.T) {
	text := base64.StdEncoding.EncodeToString([]byte("Patient record MRN-123456 attached.\r\n"))
	msg := "From: a@org.test\r\nSubject: x\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n" +
		"--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" + text + "\r\n" +
		"--b1\r\nContent-Type: application/pdf; name=\"scan.pdf\"\r\nContent-Disposition: attachment; filename=\"scan.pdf\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n" + base64.StdEncoding.EncodeToString([]byte("%PDF MRN-999999")) + "\r\n--b1--\r\n"
	got, att := scanBody([]byte(msg), 1<<20)
	if !strings.Contains(got, "MRN-123456") || !att {
		t.Errorf("text %q, attachments %v", got, att)
	}
	if strings.Contains(got, "MRN-999999") {
		t.Error("attachment content was scanned as text")
	}
	// The scan stops at the limit.
	long := "From: a@org.test\r\n\r\n" + strings.Repeat("x", 5000) + "MRN-424242\r\n"
	if got, _ := scanBody([]byte(long), 1000); strings.Contains(got, "MRN-424242") || len(got) > 1001 {
		t.Errorf("scan read %d bytes past a 1000-byte limit", len(got))
	}
	if _, att := scanBody([]byte("From: a@org.test\r\nContent-Type: text/plain\r\n\r\nhello\r\n"), 1000); att {
		t.Error("plain message reported with attachments")
	}
}

func TestEscalationHeaderOnlyFromTrustedAndAlwaysStripped(t *testing.T) {
	c, err := config.Default()
	if err != nil {
		t.Fatal(err)
	}
	engine, err := Compile(c.Policy)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("From: ehr@org.test\r\nX-Sealgate-Escalate: escrow\r\nSubject: results\r\n\r\nbody\r\n")
	for _, trusted := range []bool{true, false} {
		res, out := Apply(engine, Session{From: "ehr@org.test", Recipients: []string{"p@x.test"}, Trusted: trusted}, msg)
		want := "[tls]"
		if trusted {
			want = "[escrow]"
		}
		if got := res.Recipients[0].Chain.String(); got != want {
			t.Errorf("trusted=%v: chain %s, want %s", trusted, got, want)
		}
		if strings.Contains(string(out), "X-Sealgate-Escalate") {
			t.Errorf("trusted=%v: the escalation header left with the message", trusted)
		}
		if !strings.Contains(string(out), "Subject: results\r\n\r\nbody\r\n") {
			t.Errorf("the rest of the message changed:\n%s", out)
		}
	}
}
