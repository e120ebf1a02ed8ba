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
	scan := scanBody([]byte(msg), 1<<20)
	got, att := scan.text, scan.attachments
	if !strings.Contains(got, "MRN-123456") || !att || scan.incomplete != "" {
		t.Errorf("text %q, attachments %v, incomplete %q", got, att, scan.incomplete)
	}
	if strings.Contains(got, "MRN-999999") {
		t.Error("attachment content was scanned as text")
	}
	// The scan stops at the limit.
	long := "From: a@org.test\r\n\r\n" + strings.Repeat("x", 5000) + "MRN-424242\r\n"
	if scan := scanBody([]byte(long), 1000); strings.Contains(scan.text, "MRN-424242") || len(scan.text) > 1001 || scan.incomplete == "" {
		t.Errorf("scan read %d bytes past a 1000-byte limit (incomplete %q)", len(scan.text), scan.incomplete)
	}
	if scan := scanBody([]byte("From: a@org.test\r\nContent-Type: text/plain\r\n\r\nhello\r\n"), 1000); scan.attachments || scan.incomplete != "" {
		t.Errorf("plain message: %+v", scan)
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

// TestApplyFindsTagsInLegacyCharsets: a tag typed in Outlook or Gmail
// whose Subject went out in windows-1252 or ISO-2022-JP escalates the
// message, and the Subject leaves without it, the rest readable.
func TestApplyFindsTagsInLegacyCharsets(t *testing.T) {
	e := testEngine(t, nil, nil)
	for _, tc := range []struct{ name, subject, want string }{
		{"windows-1252", "=?windows-1252?Q?[secure]_Befund_f=FCr_M=FCller_=96_vertraulich?=", "Befund für Müller – vertraulich"},
		{"ISO-2022-JP", "=?ISO-2022-JP?B?W3NlY3VyZV0gGyRCOCE6OjdrMkwkTiQqQ04kaSQ7GyhC?=", "検査結果のお知らせ"},
		{"ISO-2022-JP, tag folded after", "=?ISO-2022-JP?B?GyRCOCE6OjdrMkwkTiQqQ04kaSQ7GyhC?=\r\n [SECURE]", "検査結果のお知らせ"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := []byte("From: a@org.test\r\nSubject: " + tc.subject + "\r\nTo: p@x.test\r\n\r\nbody\r\n")
			res, out := Apply(e, Session{From: "a@org.test", Recipients: []string{"p@x.test"}, Trusted: true}, msg)
			if rd := res.Recipients[0]; rd.Chain.String() != "[pgp, smime, escrow]" || strings.Join(res.Tags, ",") != "[secure]" {
				t.Errorf("chain %s, tags %q (%q)", rd.Chain, res.Tags, rd.Reasons)
			}
			if res.Subject != tc.want || !res.SubjectChanged {
				t.Errorf("Subject reads %q, want %q", res.Subject, tc.want)
			}
			hdr := parseHeader(out[:strings.Index(string(out), "\r\n\r\n")+2])
			if got := hdr["Subject"]; len(got) != 1 || got[0] != tc.want {
				t.Errorf("the spooled message's Subject reads %q", got)
			}
		})
	}
}

// TestApplyOversizedSubject: a Subject too long to search is decided as
// tagged, left as it came, and the decision says why.
func TestApplyOversizedSubject(t *testing.T) {
	e := testEngine(t, nil, nil)
	subject := strings.Repeat("=?utf-8?B?QmVmdW5kIMO8YmVy?=\r\n ", (4<<20)/32) + "[sec ure]"
	msg := []byte("From: a@org.test\r\nSubject: " + subject + "\r\n\r\nbody\r\n")
	res, out := Apply(e, Session{From: "a@org.test", Recipients: []string{"p@x.test"}, Trusted: true}, msg)
	if rd := res.Recipients[0]; rd.Chain.String() != "[pgp, smime, escrow]" || !strings.Contains(strings.Join(rd.Reasons, "\n"), "Subject not searched for tags") {
		t.Errorf("chain %s (%q)", rd.Chain, rd.Reasons)
	}
	if len(res.ScanErrors) != 1 || !strings.Contains(res.ScanErrors[0], "longer than the 16 KiB searched") || !strings.Contains(res.ScanErrors[0], "treated as tagged") {
		t.Errorf("scan errors %q", res.ScanErrors)
	}
	if res.SubjectChanged || string(out) != string(msg) {
		t.Error("an unsearched Subject was changed")
	}
}
