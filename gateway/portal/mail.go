package portal

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/http"
	"strings"

	"github.com/sealgate/sealgate/internal/mailtext"
	"github.com/sealgate/sealgate/queue"
)

// Mail the portal sends: one-time codes to recipients, and their
// replies to the senders. Both go through the spool like any mail
// (DKIM-signed, delivered over TLS as the transport policy says).

// mailCode queues the code mail to addr. It has a null envelope sender
// (nothing answers a bounce of it) and goes by the tls method.
func (p *Portal) mailCode(ctx context.Context, addr, code string) error {
	org := p.o.Organization
	body := fmt.Sprintf("Your one-time code for the secure message%s is:\r\n\r\n    %s\r\n\r\n"+
		"It is valid for 10 minutes and can be used once. If you did not ask for it, ignore this mail:\r\n"+
		"without the code, nobody can open the message.\r\n", from(org), code)
	var msg bytes.Buffer
	msg.WriteString("From: " + mime.QEncoding.Encode("utf-8", nonEmpty(org, "Secure mail")) + " <" + p.o.MailFrom + ">\r\n")
	msg.WriteString("To: " + addr + "\r\n")
	msg.WriteString("Subject: Your code for the secure message\r\n")
	msg.WriteString("Date: " + p.o.Now().UTC().Format("Mon, 02 Jan 2006 15:04:05 -0700") + "\r\n")
	msg.WriteString("Message-ID: <" + randomHex() + ".code@" + p.o.Hostname + ">\r\n")
	msg.WriteString("Auto-Submitted: auto-generated\r\n")
	msg.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n")
	msg.WriteString(body)
	return p.enqueue(ctx, queue.Envelope{From: "", Recipients: []string{addr},
		Decisions: []queue.RcptDecision{{Chain: []string{"tls"}, Reasons: []string{"escrow portal: one-time code"}}}}, msg.Bytes())
}

func from(org string) string {
	if org == "" {
		return ""
	}
	return " from " + org
}

func nonEmpty(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func randomHex() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (p *Portal) enqueue(ctx context.Context, env queue.Envelope, body []byte) error {
	id, err := p.o.Spool.Enqueue(ctx, env, body)
	if err != nil {
		return err
	}
	if p.o.Wake != nil {
		p.o.Wake(id)
	}
	return nil
}

// reply is POST /m/{token}/reply: the recipient's answer, with its
// attachments, to the original sender, threaded under the message.
func (p *Portal) reply(w http.ResponseWriter, r *http.Request, token string) {
	if !p.sessions.valid(r, token) {
		http.Redirect(w, r, "/m/"+token, http.StatusSeeOther)
		return
	}
	en, err := p.o.Store.Lookup(token)
	if err != nil {
		p.storeErr(w, r, err)
		return
	}
	v, ok := p.openMessage(w, r, token)
	if !ok {
		return
	}
	text := strings.TrimSpace(r.FormValue("text"))
	if text == "" {
		p.renderMessage(w, r, token, v, "", english.ReplyLabel)
		return
	}
	to := en.Message.EnvelopeFrom
	if to == "" {
		p.renderMessage(w, r, token, v, "", english.Failed)
		return
	}
	var files []struct {
		name, ctype string
		data        []byte
	}
	total := int64(len(text))
	if r.MultipartForm != nil {
		for _, fh := range r.MultipartForm.File["files"] {
			if fh.Size == 0 && fh.Filename == "" {
				continue
			}
			total += fh.Size
			if total > p.o.MaxReplyBytes {
				p.renderMessage(w, r, token, v, "", english.ReplyTooBig)
				return
			}
			f, err := fh.Open()
			if err != nil {
				continue
			}
			data, _ := io.ReadAll(io.LimitReader(f, p.o.MaxReplyBytes))
			f.Close()
			ct := fh.Header.Get("Content-Type")
			if _, _, err := mime.ParseMediaType(ct); err != nil || ct == "" {
				ct = "application/octet-stream"
			}
			files = append(files, struct {
				name, ctype string
				data        []byte
			}{fh.Filename, ct, data})
		}
	}

	rcpt := en.Recipient.Address
	subject := v.Subject
	if !strings.HasPrefix(strings.ToLower(subject), "re:") {
		subject = "Re: " + subject
	}
	boundary := "sealgate-reply-" + randomHex()
	var msg bytes.Buffer
	// From is the portal's address (the recipient's own domain would
	// fail its DMARC from here); Reply-To and the text say who wrote.
	msg.WriteString("From: " + mime.QEncoding.Encode("utf-8", rcpt+" via secure portal") + " <" + p.o.MailFrom + ">\r\n")
	msg.WriteString("Reply-To: " + rcpt + "\r\n")
	msg.WriteString("To: " + to + "\r\n")
	msg.WriteString("Subject: " + mime.QEncoding.Encode("utf-8", subject) + "\r\n")
	msg.WriteString("Date: " + p.o.Now().UTC().Format("Mon, 02 Jan 2006 15:04:05 -0700") + "\r\n")
	msg.WriteString("Message-ID: <" + randomHex() + ".reply@" + p.o.Hostname + ">\r\n")
	if id := strings.TrimSpace(v.MessageID); id != "" && !strings.ContainsAny(id, "\r\n") {
		msg.WriteString("In-Reply-To: " + id + "\r\nReferences: " + id + "\r\n")
	}
	msg.WriteString("X-Sealgate-Escrow-Reply: " + en.Recipient.ID + "\r\n")
	msg.WriteString("MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"" + boundary + "\"\r\n\r\n")
	msg.WriteString("--" + boundary + "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	qp := quotedprintable.NewWriter(&msg)
	qp.Write([]byte(mailtext.NormalizeLineEndings([]byte("Reply from " + rcpt + " through the secure portal:\r\n\r\n" + text + "\r\n"))))
	qp.Close()
	msg.WriteString("\r\n")
	for _, f := range files {
		msg.WriteString("--" + boundary + "\r\nContent-Type: " + f.ctype + "\r\nContent-Transfer-Encoding: base64\r\n" +
			"Content-Disposition: " + mimeDisposition(f.name) + "\r\n\r\n")
		enc := base64.StdEncoding.EncodeToString(f.data)
		for len(enc) > 76 {
			msg.WriteString(enc[:76] + "\r\n")
			enc = enc[76:]
		}
		msg.WriteString(enc + "\r\n")
	}
	msg.WriteString("--" + boundary + "--\r\n")
	// The reply goes to the sender's own organisation, with the chain
	// the policy gives any message to that address (rules, floor), else
	// by the transport policy's TLS.
	env := queue.Envelope{From: p.o.MailFrom, Recipients: []string{to},
		Decisions: []queue.RcptDecision{{Chain: []string{"tls"}, Reasons: []string{"escrow portal: reply"}}}}
	out := msg.Bytes()
	if p.o.ReplyPolicy != nil {
		env.Decisions, out = p.o.ReplyPolicy(env, out)
	}
	err = p.enqueue(r.Context(), env, out)
	if err != nil {
		p.o.Logger.Error("cannot queue the reply", "err", err)
		p.renderMessage(w, r, token, v, "", english.Failed)
		return
	}
	p.o.Store.Record(token, queue.EscrowReplied, client(r), fmt.Sprintf("%d attachments, %d bytes", len(files), total))
	p.renderMessage(w, r, token, v, english.ReplySent, "")
}

// mimeDisposition is the Content-Disposition value of an attachment
// named name (RFC 2183, RFC 2231 for names outside ASCII), with
// control characters, quotes and path separators replaced.
func mimeDisposition(name string) string {
	name = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '/' || r == '\\' || r == '"' {
			return '_'
		}
		return r
	}, name)
	return mime.FormatMediaType("attachment", map[string]string{"filename": name})
}
