package submit

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"net/textproto"
	"strings"
	"time"

	gomail "github.com/emersion/go-message/mail"
)

// JSONMessage is the send API's JSON form of a message.
type JSONMessage struct {
	From        string            `json:"from"`
	To          []string          `json:"to"`
	Cc          []string          `json:"cc,omitempty"`
	Bcc         []string          `json:"bcc,omitempty"`
	Subject     string            `json:"subject"`
	Text        string            `json:"text,omitempty"`
	HTML        string            `json:"html,omitempty"`
	Attachments []Attachment      `json:"attachments,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`
	// Secure escalates like a [secure] tag in the subject.
	Secure         bool   `json:"secure,omitempty"`
	IdempotencyKey string `json:"idempotency_key,omitempty"`
}

// Attachment is a file: its content base64 in JSON.
type Attachment struct {
	Filename    string `json:"filename"`
	ContentType string `json:"content_type"`
	Content     []byte `json:"content"`
}

// reserved are the header fields the message's structure sets; a
// headers entry may not replace them.
var reserved = map[string]bool{"From": true, "To": true, "Cc": true, "Bcc": true, "Subject": true, "Date": true,
	"Message-Id": true, "Mime-Version": true, "Content-Type": true, "Content-Transfer-Encoding": true,
	"Content-Disposition": true, "Received": true, "Return-Path": true, "Sender": true}

// Build makes the RFC 5322 message of j and its envelope (Bcc goes in
// the envelope only). hostname names the Message-ID's domain.
func Build(j JSONMessage, hostname string, now time.Time) (Submission, error) {
	if j.Text == "" && j.HTML == "" && len(j.Attachments) == 0 {
		return Submission{}, refuse(400, "a message needs text, html or an attachment")
	}
	from, err := mail.ParseAddress(j.From)
	if err != nil {
		return Submission{}, refuse(400, "from %q: %v", j.From, err)
	}
	var h gomail.Header
	h.SetAddressList("From", []*gomail.Address{{Name: from.Name, Address: from.Address}})
	var rcpts []string
	for _, f := range []struct {
		name string
		list []string
	}{{"To", j.To}, {"Cc", j.Cc}, {"Bcc", j.Bcc}} {
		var addrs []*gomail.Address
		for _, s := range f.list {
			a, err := mail.ParseAddress(s)
			if err != nil {
				return Submission{}, refuse(400, "%s %q: %v", strings.ToLower(f.name), s, err)
			}
			addrs = append(addrs, &gomail.Address{Name: a.Name, Address: a.Address})
			rcpts = append(rcpts, a.Address)
		}
		if len(addrs) > 0 && f.name != "Bcc" {
			h.SetAddressList(f.name, addrs)
		}
	}
	h.SetSubject(j.Subject)
	h.SetDate(now)
	h.SetMessageID(strings.Trim(newMessageID(hostname), "<>"))
	for k, v := range j.Headers {
		name := textproto.CanonicalMIMEHeaderKey(k)
		if reserved[name] || strings.HasPrefix(name, "Resent-") || !validFieldName(k) || strings.ContainsAny(v, "\r\n") {
			return Submission{}, refuse(400, "header %q may not be set this way", k)
		}
		h.Set(name, v)
	}
	var buf bytes.Buffer
	if err := writeBody(&buf, h, j); err != nil {
		return Submission{}, refuse(400, "%v", err)
	}
	return Submission{From: from.Address, Recipients: rcpts, Message: buf.Bytes(), Secure: j.Secure, IdempotencyKey: j.IdempotencyKey}, nil
}

func writeBody(buf *bytes.Buffer, h gomail.Header, j JSONMessage) error {
	texts := func(w *gomail.InlineWriter) error {
		for _, p := range []struct{ typ, body string }{{"text/plain", j.Text}, {"text/html", j.HTML}} {
			if p.body == "" {
				continue
			}
			var ph gomail.InlineHeader
			ph.Set("Content-Type", p.typ+"; charset=utf-8")
			pw, err := w.CreatePart(ph)
			if err != nil {
				return err
			}
			io.WriteString(pw, p.body)
			pw.Close()
		}
		return w.Close()
	}
	if len(j.Attachments) == 0 && (j.Text == "") != (j.HTML == "") {
		typ, body := "text/plain", j.Text
		if j.HTML != "" {
			typ, body = "text/html", j.HTML
		}
		h.Set("Content-Type", typ+"; charset=utf-8")
		w, err := gomail.CreateSingleInlineWriter(buf, h)
		if err != nil {
			return err
		}
		io.WriteString(w, body)
		return w.Close()
	}
	if len(j.Attachments) == 0 {
		w, err := gomail.CreateInlineWriter(buf, h)
		if err != nil {
			return err
		}
		return texts(w)
	}
	mw, err := gomail.CreateWriter(buf, h)
	if err != nil {
		return err
	}
	if j.Text != "" || j.HTML != "" {
		iw, err := mw.CreateInline()
		if err != nil {
			return err
		}
		if err := texts(iw); err != nil {
			return err
		}
	}
	for _, a := range j.Attachments {
		ct := a.ContentType
		if ct == "" {
			ct = "application/octet-stream"
		}
		mt, params, err := mime.ParseMediaType(ct)
		if err != nil || a.Filename == "" || strings.ContainsFunc(ct, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return fmt.Errorf("attachment %q: needs a filename and a valid content_type", a.Filename)
		}
		var ah gomail.AttachmentHeader
		ah.Set("Content-Type", mime.FormatMediaType(mt, params))
		ah.SetFilename(a.Filename)
		aw, err := mw.CreateAttachment(ah)
		if err != nil {
			return err
		}
		aw.Write(a.Content)
		aw.Close()
	}
	return mw.Close()
}

// ParseRaw takes the envelope of a raw message from its header (From;
// To, Cc and Bcc) and removes Bcc from it; a missing Date or Message-ID
// is added, as a submission server does (RFC 6409 §8).
func ParseRaw(raw []byte, hostname string, now time.Time) (Submission, error) {
	msg := bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n"))
	msg = bytes.ReplaceAll(msg, []byte("\n"), []byte("\r\n"))
	end := bytes.Index(msg, []byte("\r\n\r\n"))
	if end < 0 {
		return Submission{}, refuse(400, "the message has no header/body separator")
	}
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		return Submission{}, refuse(400, "the message header does not parse: %v", err)
	}
	from, err := m.Header.AddressList("From")
	if err != nil || len(from) == 0 {
		return Submission{}, refuse(400, "the message needs a From header with an address")
	}
	// One author, one address: the key's sender domains are checked
	// against it, and a second From (or a Sender) would show recipients
	// someone the key may not speak for.
	if len(m.Header["From"]) != 1 || len(from) != 1 {
		return Submission{}, refuse(400, "the message must have exactly one From header with one address")
	}
	if len(m.Header["Sender"]) > 0 {
		return Submission{}, refuse(400, "a Sender header is not taken through the send API")
	}
	var rcpts []string
	for _, f := range []string{"To", "Cc", "Bcc"} {
		for _, v := range m.Header[f] { // every field of that name, not just the first
			list, err := mail.ParseAddressList(v)
			if err != nil {
				return Submission{}, refuse(400, "%s header: %v", f, err)
			}
			for _, a := range list {
				rcpts = append(rcpts, a.Address)
			}
		}
	}
	header := stripField(stripField(msg[:end+2], "Bcc"), "Resent-Bcc")
	var add bytes.Buffer
	if m.Header.Get("Date") == "" {
		fmt.Fprintf(&add, "Date: %s\r\n", now.Format(time.RFC1123Z))
	}
	if m.Header.Get("Message-Id") == "" {
		fmt.Fprintf(&add, "Message-ID: %s\r\n", newMessageID(hostname))
	}
	out := append(append(append([]byte{}, header...), add.Bytes()...), msg[end+2:]...)
	return Submission{From: from[0].Address, Recipients: rcpts, Message: out}, nil
}

// stripField removes every field named name (and its folded lines) from
// a header block.
func stripField(block []byte, name string) []byte {
	var out bytes.Buffer
	skipping := false
	for _, line := range bytes.SplitAfter(block, []byte("\r\n")) {
		if len(line) == 0 {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if !skipping {
				out.Write(line)
			}
			continue
		}
		colon := bytes.IndexByte(line, ':')
		skipping = colon > 0 && strings.EqualFold(strings.TrimSpace(string(line[:colon])), name)
		if !skipping {
			out.Write(line)
		}
	}
	return out.Bytes()
}

func validFieldName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < 33 || r > 126 || r == ':' {
			return false
		}
	}
	return true
}

func newMessageID(hostname string) string {
	b := make([]byte, 12)
	rand.Read(b)
	return "<" + hex.EncodeToString(b) + "@" + hostname + ">"
}
