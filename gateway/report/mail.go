package report

import (
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"net/textproto"
	"time"
)

// reportMail is a multipart mail from the gateway to a sender: DSNs and
// security receipts share its header and its first, human-readable part.
type reportMail struct {
	head, body bytes.Buffer
	mw         *multipart.Writer
}

// reportHeader is what differs between the gateway's reports.
type reportHeader struct {
	FromName, To, Subject string
	MessageID             string // without <>
	AutoSubmitted         string // auto-replied (DSN), auto-generated (receipt)
	// ContentType is the multipart type with its parameters, without the
	// boundary ("multipart/report; report-type=delivery-status").
	ContentType string
	Boundary    string // its prefix; a random token follows
}

// startReport writes the header and opens the text/plain part, which
// the caller writes to.
func startReport(hostname string, h reportHeader, now time.Time) (*reportMail, io.Writer, error) {
	r := &reportMail{}
	r.mw = multipart.NewWriter(&r.body)
	boundary := h.Boundary + randomToken(12)
	if err := r.mw.SetBoundary(boundary); err != nil {
		return nil, nil, err
	}
	hdr := func(k, v string) { fmt.Fprintf(&r.head, "%s: %s\r\n", k, v) }
	hdr("From", fmt.Sprintf("%s <MAILER-DAEMON@%s>", h.FromName, hostname))
	hdr("To", "<"+h.To+">")
	hdr("Subject", h.Subject)
	hdr("Date", now.Format(time.RFC1123Z))
	hdr("Message-ID", "<"+h.MessageID+"@"+hostname+">")
	hdr("Auto-Submitted", h.AutoSubmitted)
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", fmt.Sprintf("%s;\r\n\tboundary=%q", h.ContentType, boundary))
	r.head.WriteString("\r\n")
	text := textproto.MIMEHeader{}
	text.Set("Content-Type", "text/plain; charset=utf-8")
	text.Set("Content-Transfer-Encoding", "8bit")
	w, err := r.mw.CreatePart(text)
	if err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(w, "This is the mail system at %s.\r\n", hostname)
	return r, w, nil
}

// finish closes the multipart body and returns the whole mail.
func (r *reportMail) finish() ([]byte, error) {
	if err := r.mw.Close(); err != nil {
		return nil, err
	}
	return append(r.head.Bytes(), r.body.Bytes()...), nil
}
