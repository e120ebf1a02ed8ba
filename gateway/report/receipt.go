package report

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/textproto"
	"strings"
	"time"

	"github.com/sealgate/sealgate/queue"
)

// Security receipts: when the last recipient of a message reaches a
// final state and a policy rule asked for it (receipt: true), the sender
// gets one short mail saying, per recipient, how the message actually
// left — TLS version and certificate verdict, MTA-STS or DANE, the PGP
// key or S/MIME certificate it was encrypted to, escrow — with the same
// facts as a JSON part. Built from the attempt records, never from the
// message's content.

// Receipt is the JSON part.
type Receipt struct {
	QueueID    string             `json:"queue_id"`
	MessageID  string             `json:"message_id,omitempty"`
	Sender     string             `json:"sender"`
	Received   time.Time          `json:"received"`
	Finished   time.Time          `json:"finished"`
	Recipients []ReceiptRecipient `json:"recipients"`
}

// ReceiptRecipient is how one recipient's copy left.
type ReceiptRecipient struct {
	Recipient string    `json:"recipient"`
	State     string    `json:"state"`  // delivered, bounced, dropped
	Method    string    `json:"method"` // the chain method that settled it
	Status    string    `json:"status,omitempty"`
	At        time.Time `json:"at,omitzero"`
	// From the attempt that settled it (none for a recipient settled
	// without reaching a server).
	RemoteMTA     string `json:"remote_mta,omitempty"`
	IP            string `json:"ip,omitempty"`
	TLSVersion    string `json:"tls_version,omitempty"`
	Cipher        string `json:"cipher,omitempty"`
	CertVerified  bool   `json:"cert_verified"`
	TLSLevel      string `json:"tls_level,omitempty"`
	TLSRequiredBy string `json:"tls_required_by,omitempty"`
	MTASTS        string `json:"mta_sts,omitempty"`
	DANE          string `json:"dane,omitempty"`
	Protection    string `json:"protection,omitempty"`
	Reply         string `json:"reply,omitempty"`
	// EscrowOpened, for a recipient served through the portal: whether
	// the recipient had opened the message when the receipt was written
	// (absent when the escrow store could not say).
	EscrowOpened   *bool     `json:"escrow_opened,omitempty"`
	EscrowOpenedAt time.Time `json:"escrow_opened_at,omitzero"`
}

// EscrowOpened is when each escrowed recipient (by address) opened the
// message in the portal; the zero time for one who has not yet.
type EscrowOpened map[string]time.Time

// ReceiptOf gathers the facts of a finished message's receipt; opened,
// when known, says which escrowed recipients opened it (nil: unknown).
func ReceiptOf(m *queue.Message, opened EscrowOpened) Receipt {
	r := Receipt{QueueID: m.ID, MessageID: m.Envelope.MessageID, Sender: m.Envelope.From, Received: m.Received.UTC(), Finished: m.DoneAt.UTC()}
	for _, rc := range m.Recipients {
		rr := ReceiptRecipient{Recipient: rc.Address, State: string(rc.State), Method: rc.Method(), Status: rc.Status, At: rc.DoneAt.UTC()}
		rr.Reply = rc.LastError // the recipient's own result (a refusal names it)
		if a := settlingAttempt(m, rc.Address); a != nil {
			rr.RemoteMTA, rr.IP, rr.Protection = a.MXHost, a.IP, a.Protection
			if rc.State == queue.StateDelivered {
				rr.Reply = a.Reply // the destination's acceptance, queue ID and all
			}
			rr.TLSLevel, rr.TLSRequiredBy, rr.MTASTS, rr.DANE = a.TLSLevel, a.TLSRequiredBy, a.MTASTS, a.DANE
			if a.Connected() {
				rr.TLSVersion, rr.Cipher, rr.CertVerified = a.TLSVersion, a.Cipher, a.CertVerified
			}
		}
		if at, ok := opened[rc.Address]; ok && rr.Method == "escrow" {
			yes := !at.IsZero()
			rr.EscrowOpened, rr.EscrowOpenedAt = &yes, at.UTC()
		}
		r.Recipients = append(r.Recipients, rr)
	}
	return r
}

// settlingAttempt is the last attempt that names addr.
func settlingAttempt(m *queue.Message, addr string) *queue.Attempt {
	for i := len(m.Events) - 1; i >= 0; i-- {
		if a := m.Events[i].Attempt; a != nil {
			for _, r := range a.Recipients {
				if r == addr {
					return a
				}
			}
		}
	}
	return nil
}

// ReceiptBuilder writes receipts from the gateway's name.
type ReceiptBuilder struct {
	Hostname string
}

// Build is queue.ReceiptFunc.
func (b ReceiptBuilder) Build(m *queue.Message) (queue.Envelope, []byte, error) {
	return b.BuildWithEscrow(m, nil)
}

// BuildWithEscrow is Build, saying of each escrowed recipient whether
// they had opened the message (opened, read from the escrow store).
func (b ReceiptBuilder) BuildWithEscrow(m *queue.Message, opened EscrowOpened) (queue.Envelope, []byte, error) {
	rec := ReceiptOf(m, opened)
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return queue.Envelope{}, nil, err
	}
	rm, w, err := startReport(b.Hostname, reportHeader{FromName: "Mail Security Receipts", To: m.Envelope.From,
		Subject:   fmt.Sprintf("Security receipt: how your message left (%d recipients)", len(m.Recipients)),
		MessageID: m.ID + ".receipt." + randomToken(6), AutoSubmitted: "auto-generated",
		ContentType: "multipart/mixed", Boundary: "sealgate-receipt-"}, time.Now())
	if err != nil {
		return queue.Envelope{}, nil, err
	}
	mw := rm.mw
	fmt.Fprintf(w, "\r\n")
	id := m.Envelope.MessageID
	if id == "" {
		id = "(no Message-ID)"
	}
	fmt.Fprintf(w, "%s\r\nleft as follows:\r\n\r\n", foldLine(fmt.Sprintf("Your message %s (queue ID %s, received %s)", diagnostic(id), m.ID, rec.Received.Format(time.RFC1123Z)), softLineLimit))
	for _, r := range rec.Recipients {
		fmt.Fprintf(w, "%s\r\n", foldLine("<"+r.Recipient+">: "+describe(r), softLineLimit))
	}
	fmt.Fprintf(w, "\r\nThe same facts are attached as receipt.json.\r\n")

	js := textproto.MIMEHeader{}
	js.Set("Content-Type", "application/json; charset=utf-8")
	js.Set("Content-Disposition", `attachment; filename="receipt.json"`)
	js.Set("Content-Transfer-Encoding", "base64") // any line length, any reply text
	if w, err = mw.CreatePart(js); err != nil {
		return queue.Envelope{}, nil, err
	}
	enc := base64.StdEncoding.EncodeToString(data)
	for len(enc) > 76 {
		fmt.Fprintf(w, "%s\r\n", enc[:76])
		enc = enc[76:]
	}
	fmt.Fprintf(w, "%s\r\n", enc)
	msg, err := rm.finish()
	if err != nil {
		return queue.Envelope{}, nil, err
	}
	return queue.Envelope{Recipients: []string{m.Envelope.From}, IsDSN: true}, msg, nil
}

// describe is one recipient's line in words.
func describe(r ReceiptRecipient) string {
	var parts []string
	switch r.State {
	case string(queue.StateDelivered):
		parts = append(parts, "delivered")
	case string(queue.StateBounced):
		parts = append(parts, "NOT delivered (bounced "+r.Status+")")
	case string(queue.StateDropped):
		parts = append(parts, "NOT delivered (dropped by policy)")
	default:
		parts = append(parts, r.State)
	}
	if r.Method == "escrow" && r.State == string(queue.StateDelivered) {
		switch {
		case r.EscrowOpened == nil:
			parts = append(parts, "held in the secure portal: the recipient got a notice with a link (the access log records when it is opened)")
		case *r.EscrowOpened:
			parts = append(parts, "held in the secure portal: opened by the recipient "+r.EscrowOpenedAt.Format(time.RFC1123Z))
		default:
			parts = append(parts, "held in the secure portal: the recipient got a notice with a link and had not opened it yet (the access log records when it is)")
		}
	}
	if r.Protection != "" {
		parts = append(parts, "encrypted: "+r.Protection)
	}
	switch {
	case r.TLSVersion != "" && r.CertVerified:
		parts = append(parts, fmt.Sprintf("over %s to %s, certificate verified", r.TLSVersion, r.RemoteMTA))
	case r.TLSVersion != "":
		parts = append(parts, fmt.Sprintf("over %s to %s, certificate not verified", r.TLSVersion, r.RemoteMTA))
	case r.RemoteMTA != "":
		parts = append(parts, "WITHOUT TLS to "+r.RemoteMTA)
	}
	if r.MTASTS != "" {
		parts = append(parts, "MTA-STS "+r.MTASTS)
	}
	if r.DANE != "" {
		parts = append(parts, "DANE: certificate matched TLSA "+r.DANE)
	}
	if r.State == string(queue.StateBounced) && r.Reply != "" {
		parts = append(parts, "the destination said: "+diagnostic(r.Reply))
	}
	return strings.Join(parts, "; ")
}
