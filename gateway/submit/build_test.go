package submit

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestBuildRefusesWhatWouldBreakOrDisguiseTheMessage(t *testing.T) {
	now := time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC)
	base := JSONMessage{From: "noreply@org.test", To: []string{"bob@dest.test"}, Subject: "s", Text: "x"}
	bad := base
	bad.Attachments = []Attachment{{Filename: "a.txt", ContentType: "text/plain; x=y\r\n", Content: []byte("hello")}}
	if _, err := Build(bad, "gw.test", now); err == nil {
		t.Error("a content_type with CRLF was taken")
	}
	for _, h := range []string{"Sender", "Resent-From", "From", "Bcc"} {
		m := base
		m.Headers = map[string]string{h: "ceo@bank.test"}
		if _, err := Build(m, "gw.test", now); err == nil {
			t.Errorf("header %s was taken", h)
		}
	}
	ok := base
	ok.Attachments = []Attachment{{Filename: "r.pdf", ContentType: "application/pdf", Content: []byte("%PDF-1.4")}}
	sub, err := Build(ok, "gw.test", now)
	if err != nil || !bytes.Contains(sub.Message, []byte("Content-Type: application/pdf")) || !bytes.Contains(sub.Message, []byte("JVBERi0xLjQ=")) {
		t.Errorf("attachment: %v\n%s", err, sub.Message)
	}
}

func TestParseRawTakesEveryRecipientFieldAndHidesBcc(t *testing.T) {
	raw := "From: a@org.test\r\nTo: b@dest.test\r\nTo: c@dest.test\r\nBcc: d@dest.test\r\nResent-Bcc: e@dest.test\r\nSubject: s\r\n\r\nbody\r\n"
	sub, err := ParseRaw([]byte(raw), "gw.test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sub.Recipients, []string{"b@dest.test", "c@dest.test", "d@dest.test"}) {
		t.Errorf("recipients %v", sub.Recipients)
	}
	if strings.Contains(string(sub.Message), "Bcc") || !strings.Contains(string(sub.Message), "Message-ID: <") {
		t.Errorf("message:\n%s", sub.Message)
	}
}

// A user's own address is compared with only ASCII letters folded:
// Unicode folding took a KELVIN SIGN for a K and a long s for an s,
// other mailboxes that look alike.
func TestSameUserFoldsOnlyASCII(t *testing.T) {
	for _, c := range []struct {
		from, user string
		want       bool
	}{
		{"alice@org.test", "Alice@Org.TEST", true},
		{"ALICE@org.test", "alice@org.test", true},
		{"\u212Aim@org.test", "kim@org.test", false},
		{"\u017Fam@org.test", "sam@org.test", false},
		{"bob@org.test", "alice@org.test", false},
	} {
		if got := sameUser(c.from, c.user); got != c.want {
			t.Errorf("sameUser(%q, %q) = %v, want %v", c.from, c.user, got, c.want)
		}
	}
}
