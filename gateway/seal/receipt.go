package seal

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"mime"
	"strings"
	"time"

	"github.com/sealgate/sealgate/internal/mailtext"
	"github.com/sealgate/sealgate/queue"
)

// The sender's receipt (escrow.sender_receipt): when a message is
// escrowed, its sender gets one short mail with a link of their own to
// the portal, where they can withdraw the message for every recipient
// or for one after proving their address with a one-time code. A clinic
// expects to be able to "unsend" a message that went to the wrong
// patient; the receipt is how the sender finds that page without an
// admin. It goes through the spool like a code mail: null envelope
// sender, DKIM-signed, over TLS as the transport policy says.

// SenderLinks issues a message's sender link; *queue.Escrow implements
// it. It returns "" when the message already has one.
type SenderLinks interface {
	IssueSenderLink(queueID string) (string, error)
}

// ReceiptSpool takes the receipts; *queue.Store implements it.
type ReceiptSpool interface {
	Enqueue(ctx context.Context, env queue.Envelope, body []byte) (string, error)
}

// Receipt configures the sender's receipt; all fields are required.
type Receipt struct {
	Links    SenderLinks
	Spool    ReceiptSpool
	Wake     func(id string)
	MailFrom string // From of the receipt (portal.mail_from)
}

// sendReceipt queues the receipt of m's sender, once per message.
func (e *Escrow) sendReceipt(ctx context.Context, m *queue.Message, h header) {
	rc := e.o.Receipt
	if rc == nil || m.Envelope.From == "" {
		return
	}
	token, err := rc.Links.IssueSenderLink(m.ID)
	if err != nil || token == "" {
		if err != nil {
			e.o.Logger.Error("cannot issue the sender's link", "queue_id", m.ID, "err", err)
		}
		return
	}
	org := e.o.Organization
	if org == "" {
		org = mailtext.Domain(h.senderAddr)
	}
	what := "Your secure message"
	if e.o.SubjectInNotice && h.subject != "" {
		what += " \"" + h.subject + "\""
	}
	var rnd [12]byte
	rand.Read(rnd[:])
	var msg bytes.Buffer
	msg.WriteString("From: " + mime.QEncoding.Encode("utf-8", org) + " <" + rc.MailFrom + ">\r\n")
	msg.WriteString("To: " + m.Envelope.From + "\r\n")
	msg.WriteString("Subject: Receipt: your secure message was kept on the secure server\r\n")
	msg.WriteString("Date: " + e.o.Now().UTC().Format(time.RFC1123Z) + "\r\n")
	msg.WriteString("Message-ID: <" + hex.EncodeToString(rnd[:]) + ".receipt@" + e.o.Hostname + ">\r\n")
	if id := h.messageID; id != "" && !strings.ContainsAny(id, "\r\n") {
		msg.WriteString("In-Reply-To: " + id + "\r\nReferences: " + id + "\r\n")
	}
	msg.WriteString("Auto-Submitted: auto-generated\r\n")
	msg.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	msg.WriteString(what + " was kept on " + org + "'s secure server; its recipients\r\n" +
		"got a notice with a link to read it there.\r\n\r\n" +
		"If it went to the wrong person, or should no longer be read, you can\r\n" +
		"withdraw it, for everyone or for one recipient, here:\r\n\r\n" +
		e.o.PublicURL + "/s/" + token + "\r\n\r\n" +
		"The page first emails a one-time code to this address. Please do not\r\n" +
		"forward this receipt.\r\n")
	id, err := rc.Spool.Enqueue(ctx, queue.Envelope{From: "", Recipients: []string{m.Envelope.From},
		Decisions: []queue.RcptDecision{{Chain: []string{"tls"}, Reasons: []string{"escrow: the sender's receipt"}}}}, msg.Bytes())
	if err != nil {
		e.o.Logger.Error("cannot queue the sender's receipt", "queue_id", m.ID, "err", err)
		return
	}
	if rc.Wake != nil {
		rc.Wake(id)
	}
}
