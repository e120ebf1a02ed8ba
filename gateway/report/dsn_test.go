package report

import (
	"bytes"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sealgate/sealgate/queue"
)

// TestDSNLinesStayWithinTheLimit: a remote server's 5,000-character
// reply (words and one long unbroken token) and an original header line
// longer than 998 octets still make a DSN whose every line is at most
// 998 octets (RFC 5322 §2.1.1), and which still parses.
func TestDSNLinesStayWithinTheLimit(t *testing.T) {
	reply := "550 5.7.1 " + strings.Repeat("policy violation detected ", 120) + strings.Repeat("x", 1900)
	if len(reply) < 5000 {
		t.Fatalf("reply of %d characters", len(reply))
	}
	original := "From: alice@org.test\r\nSubject: " + strings.Repeat("long ", 300) + "\r\nX-Token: " +
		strings.Repeat("y", 1500) + "\r\n\r\nbody\r\n"
	m := &queue.Message{ID: "Q1", Envelope: queue.Envelope{From: "alice@org.test"}, Received: time.Unix(0, 0)}
	bounced := []queue.Recipient{{Address: "bob@dest.test", State: queue.StateBounced, Status: "5.7.1", LastCode: 550, LastError: reply, RemoteMTA: "mx.dest.test"}}
	_, msg, err := DSNBuilder{Hostname: "gw.test"}.Build(m, bounced, []byte(original))
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(string(msg), "\r\n") {
		if len(line) > 998 {
			t.Errorf("line %d has %d octets: %.60s…", i+1, len(line), line)
		}
	}

	parsed, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	_, params, err := mime.ParseMediaType(parsed.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	mr := multipart.NewReader(parsed.Body, params["boundary"])
	var parts []string
	for {
		p, err := mr.NextPart()
		if err != nil {
			break
		}
		var b bytes.Buffer
		b.ReadFrom(p)
		parts = append(parts, b.String())
	}
	if len(parts) != 3 {
		t.Fatalf("%d parts, want 3", len(parts))
	}
	// The delivery-status fields unfold (RFC 5322 §2.2.3) to the
	// diagnostic, cut at a bound and marked as cut.
	fields, err := mail.ReadMessage(strings.NewReader(strings.SplitN(parts[1], "\r\n\r\n", 2)[1] + "\r\n\r\n"))
	if err != nil {
		t.Fatalf("per-recipient fields: %v", err)
	}
	diag := fields.Header.Get("Diagnostic-Code")
	if !strings.HasPrefix(diag, "smtp; 550 5.7.1 policy violation detected policy") || !strings.HasSuffix(diag, "[truncated]") {
		t.Errorf("Diagnostic-Code unfolds to %.80s … %s", diag, diag[max(len(diag)-40, 0):])
	}
	if !strings.Contains(parts[0], "<bob@dest.test>: 550 5.7.1 policy violation") {
		t.Errorf("human-readable part:\n%.300s", parts[0])
	}
}

func TestFoldLineUnfoldsToTheSameText(t *testing.T) {
	for _, line := range []string{
		"short",
		"Diagnostic-Code: smtp; " + strings.Repeat("word ", 100),
		"Subject:\t" + strings.Repeat("a\tbb  ccc ", 60),
		"X: " + strings.Repeat("é", 700), // no whitespace after the field name, multi-byte
	} {
		folded := foldLine(line, softLineLimit)
		for _, l := range strings.Split(folded, "\r\n") {
			if len(l) > hardLineLimit || !utf8.ValidString(l) {
				t.Errorf("folded line of %d octets (valid UTF-8: %v)", len(l), utf8.ValidString(l))
			}
		}
		if strings.Count(line, "é") == 0 && strings.ReplaceAll(folded, "\r\n", "") != line {
			t.Errorf("%.30q does not unfold to itself", line)
		}
	}
}
