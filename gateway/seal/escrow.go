package seal

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	htmltemplate "html/template"
	"log/slog"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	texttemplate "text/template"
	"time"

	"github.com/sealgate/sealgate/gateway/delivery"
	"github.com/sealgate/sealgate/gateway/scheduler"
	"github.com/sealgate/sealgate/internal/mailtext"
	"github.com/sealgate/sealgate/queue"
)

// EscrowStore keeps escrowed messages; *queue.Escrow implements it.
// Deposit stores the message (once per spool message) and returns the
// recipient's access record ID and a new link token; RecordFor adds to
// that recipient's access log.
type EscrowStore interface {
	Deposit(d queue.EscrowDeposit, body []byte) (rcptID, token string, err error)
	RecordFor(rcptID, kind, client, detail string) error
}

// EscrowOptions configure NewEscrow; nil Now and Logger take time.Now
// and a discarding logger.
type EscrowOptions struct {
	Store     EscrowStore
	PublicURL string // the portal, https://host[:port]
	Hostname  string // for the notice's Message-ID
	// Organization (empty: the sender's domain), LogoURL, AccentColor
	// brand the notice.
	Organization, LogoURL, AccentColor string
	// Subject of the notice; with SubjectInNotice the message's own is
	// appended.
	Subject         string
	SubjectInNotice bool
	// Receipt, when set (escrow.sender_receipt), sends each escrowed
	// message's sender one receipt with a link to withdraw it.
	Receipt *Receipt
	Now     func() time.Time
	Logger  *slog.Logger
}

// Escrow is the escrow chain method: the message stays in the escrow
// store and the recipient gets a notice with a link to it. It is a
// scheduler.PerRecipient method: every notice holds one recipient's
// own link and goes to that recipient alone.
type Escrow struct{ o EscrowOptions }

// NewEscrow returns the escrow method.
func NewEscrow(o EscrowOptions) *Escrow {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.PublicURL = strings.TrimSuffix(o.PublicURL, "/")
	return &Escrow{o: o}
}

// PerRecipient marks Escrow as a method that gets one recipient per
// group.
func (*Escrow) PerRecipient() {}

// Prepare escrows body for the group's recipient and returns the
// notice to send in its place.
func (e *Escrow) Prepare(ctx context.Context, m *queue.Message, g scheduler.Group, spool scheduler.Body) scheduler.Action {
	if len(g.Rcpts) != 1 {
		// The scheduler never does this to a PerRecipient method; a
		// notice for several would show each recipient the others' links.
		return scheduler.Action{Outcome: &queue.RcptOutcome{Status: "4.3.0", Message: "escrow needs one recipient per notice"}}
	}
	if err := ctx.Err(); err != nil {
		return scheduler.Action{Outcome: &queue.RcptOutcome{Status: "4.3.0", Message: "escrow interrupted"}}
	}
	rcpt := g.Rcpts[0]
	body, err := spool.Bytes()
	if err != nil {
		return scheduler.Action{Outcome: &queue.RcptOutcome{Status: "4.3.0", Message: "the message could not be read from the spool"}}
	}
	head := readHeader(body)
	rcptID, token, err := e.o.Store.Deposit(queue.EscrowDeposit{QueueID: m.ID, EnvelopeFrom: m.Envelope.From,
		Sender: head.senderText(), Recipient: rcpt}, body)
	if err != nil {
		e.o.Logger.Error("cannot escrow the message", "queue_id", m.ID, "err", err)
		return scheduler.Action{Outcome: &queue.RcptOutcome{Status: "4.3.0", Message: "the escrow store could not take the message"}}
	}
	notice, err := e.notice(head, rcpt, e.o.PublicURL+"/m/"+token)
	if err != nil {
		e.o.Logger.Error("cannot build the escrow notice", "queue_id", m.ID, "err", err)
		return scheduler.Action{Outcome: &queue.RcptOutcome{Status: "4.3.0", Message: "the escrow notice could not be built"}}
	}
	e.o.Logger.Info("message escrowed", "queue_id", m.ID, "escrow_id", rcptID)
	e.sendReceipt(ctx, m, head)
	return scheduler.Action{
		Send:       delivery.Bytes(notice),
		Protection: "escrow: content kept in the gateway (escrow " + rcptID + "); the recipient got a notice with a link",
		Delivered: func(out []queue.RcptOutcome) {
			for _, o := range out {
				kind, detail := queue.EscrowNoticeSent, "notice accepted by "+o.RemoteMTA
				if !o.Delivered {
					kind, detail = queue.EscrowNoticeFailed, mailtext.OneLine(o.Message)
				}
				if err := e.o.Store.RecordFor(rcptID, kind, "", detail); err != nil {
					e.o.Logger.Error("cannot log the notice", "escrow_id", rcptID, "err", err)
				}
			}
		},
	}
}

// header is what the notice needs of the original message.
type header struct {
	fromRaw     []byte // the From field as it arrived, folding and CRLF included
	senderName  string
	senderAddr  string
	subject     string
	messageID   string
	fromPresent bool
}

func readHeader(body []byte) header {
	fields, _ := splitHeader(body)
	var h header
	dec := mime.WordDecoder{}
	for _, f := range fields {
		_, value, _ := bytes.Cut(f.raw, []byte(":"))
		v := strings.TrimSpace(strings.NewReplacer("\r\n", "").Replace(string(value)))
		switch f.name {
		case "from":
			if !h.fromPresent {
				h.fromRaw, h.fromPresent = f.raw, true
				if a, err := (&mail.AddressParser{WordDecoder: &dec}).Parse(v); err == nil {
					h.senderName, h.senderAddr = a.Name, a.Address
				} else {
					h.senderAddr = v
				}
			}
		case "subject":
			if s, err := dec.DecodeHeader(v); err == nil {
				h.subject = s
			} else {
				h.subject = v
			}
		case "message-id":
			h.messageID = v
		}
	}
	return h
}

func (h header) senderText() string {
	if h.senderName == "" {
		return h.senderAddr
	}
	return h.senderName + " <" + h.senderAddr + ">"
}

// noticeData fills the notice templates.
type noticeData struct {
	Organization, SenderName, SenderAddr, Link, LogoURL, Accent string
	Expiry                                                      string
}

var noticeText = texttemplate.Must(texttemplate.New("text").Parse(`You have a secure message from {{.Organization}}.

Sender: {{if .SenderName}}{{.SenderName}} <{{.SenderAddr}}>{{else}}{{.SenderAddr}}{{end}}

Open it here:
{{.Link}}

To prove that this mailbox is yours, the page sends a one-time code to
this address. The message stays on {{.Organization}}'s secure server;
this notice holds nothing of it. The link works for this address only:
please do not forward this notice.
`))

var noticeHTML = htmltemplate.Must(htmltemplate.New("html").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>Secure message</title></head>
<body style="margin:0;padding:24px;font-family:Arial,Helvetica,sans-serif;color:#1a1a1a;background:#f5f5f5">
<div style="max-width:560px;margin:0 auto;background:#ffffff;padding:24px;border-top:4px solid {{.Accent}}">
{{if .LogoURL}}<p><img src="{{.LogoURL}}" alt="{{.Organization}}" style="max-height:48px"></p>{{end}}
<h1 style="font-size:20px">You have a secure message from {{.Organization}}</h1>
<p>Sender: <strong>{{.SenderName}}</strong> &lt;{{.SenderAddr}}&gt;</p>
<p><a href="{{.Link}}" style="display:inline-block;padding:12px 20px;background:{{.Accent}};color:#ffffff;text-decoration:none;border-radius:4px">Open the secure message</a></p>
<p style="font-size:13px;color:#444">If the button does not work, copy this address into your browser:<br>{{.Link}}</p>
<p style="font-size:13px;color:#444">To prove that this mailbox is yours, the page sends a one-time code to this address. The message stays on {{.Organization}}'s secure server; this notice holds nothing of it. The link works for this address only: please do not forward this notice.</p>
</div></body></html>
`))

// notice builds the notice mail for rcpt: text and HTML alternatives,
// the original From (so the sender's DKIM key signs it and the
// recipient recognises the sender), the neutral Subject.
func (e *Escrow) notice(h header, rcpt, link string) ([]byte, error) {
	org := e.o.Organization
	if org == "" {
		org = mailtext.Domain(h.senderAddr)
	}
	accent := e.o.AccentColor
	if accent == "" {
		accent = "#1f5fa8"
	}
	d := noticeData{Organization: org, SenderName: h.senderName, SenderAddr: h.senderAddr, Link: link,
		LogoURL: e.o.LogoURL, Accent: accent}
	var text, html bytes.Buffer
	if err := noticeText.Execute(&text, d); err != nil {
		return nil, err
	}
	if err := noticeHTML.Execute(&html, d); err != nil {
		return nil, err
	}
	subject := e.o.Subject
	if e.o.SubjectInNotice && h.subject != "" {
		subject += ": " + h.subject
	}
	var rnd [12]byte
	rand.Read(rnd[:])
	boundary := "sealgate-notice-" + hex.EncodeToString(rnd[:])
	var out bytes.Buffer
	if h.fromPresent {
		out.Write(h.fromRaw)
	} else {
		return nil, fmt.Errorf("the message has no From field")
	}
	out.WriteString("To: " + rcpt + "\r\n")
	out.WriteString("Subject: " + encodeSubject(subject) + "\r\n")
	out.WriteString("Date: " + e.o.Now().UTC().Format(time.RFC1123Z) + "\r\n")
	out.WriteString("Message-ID: <" + hex.EncodeToString(rnd[:]) + ".notice@" + e.o.Hostname + ">\r\n")
	out.WriteString("MIME-Version: 1.0\r\n")
	out.WriteString("Content-Type: multipart/alternative; boundary=\"" + boundary + "\"\r\n\r\n")
	for _, part := range []struct {
		ctype string
		body  []byte
	}{{"text/plain; charset=utf-8", text.Bytes()}, {"text/html; charset=utf-8", html.Bytes()}} {
		out.WriteString("--" + boundary + "\r\nContent-Type: " + part.ctype + "\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
		qp := quotedprintable.NewWriter(&out)
		qp.Write(bytes.ReplaceAll(part.body, []byte("\n"), []byte("\r\n")))
		qp.Close()
		out.WriteString("\r\n")
	}
	out.WriteString("--" + boundary + "--\r\n")
	return out.Bytes(), nil
}
