package gateway

import (
	"encoding/base64"
	"strings"
	"testing"
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
