package report

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/textproto"
	"strings"
	"time"

	"github.com/sealgate/sealgate/queue"
)

// maxReturnedHeader bounds how much of the original header a DSN carries
// back (RFC 3462 text/rfc822-headers): enough for any real header block,
// small enough that a hostile message cannot make us mail back megabytes.
const maxReturnedHeader = 64 << 10

// DSNBuilder writes delivery status notifications (RFC 3464) for
// recipients that bounced (Action: failed) or are still pending after
// the delay warning time (Action: delayed, with Will-Retry-Until): a
// multipart/report with a human-readable part,
// a message/delivery-status part per RFC 3464 §2, and the original
// message's header (not its body: the body may be confidential and is
// never echoed back).
type DSNBuilder struct {
	Hostname string           // the Reporting-MTA and the From domain
	Now      func() time.Time // nil: time.Now
}

// Build returns the envelope and message of a DSN to m's sender about
// the recipients given: a recipient in a final state failed, any other
// is delayed. The envelope uses the null reverse-path so that
// a DSN can never cause another one (RFC 5321 §4.5.5).
func (b DSNBuilder) Build(m *queue.Message, bounced []queue.Recipient, original []byte) (queue.Envelope, []byte, error) {
	if m.Envelope.From == "" {
		return queue.Envelope{}, nil, fmt.Errorf("dsn: message %s has the null sender", m.ID)
	}
	now := time.Now()
	if b.Now != nil {
		now = b.Now()
	}
	rm, w, err := startReport(b.Hostname, reportHeader{FromName: "Mail Delivery System", To: m.Envelope.From, Subject: subjectFor(bounced),
		MessageID: m.ID + "." + randomToken(6), AutoSubmitted: "auto-replied",
		ContentType: "multipart/report; report-type=delivery-status", Boundary: "sealgate-dsn-"}, now)
	if err != nil {
		return queue.Envelope{}, nil, err
	}
	mw := rm.mw
	var failed, delayed []queue.Recipient
	for _, r := range bounced {
		if isDelayed(r) {
			delayed = append(delayed, r)
		} else {
			failed = append(failed, r)
		}
	}
	received := m.Received.UTC().Format(time.RFC1123Z)
	if len(failed) > 0 {
		fmt.Fprintf(w, "\r\nYour message (queue ID %s, received %s) could not be delivered\r\n", m.ID, received)
		fmt.Fprintf(w, "to the following recipients:\r\n\r\n")
		for _, r := range failed {
			fmt.Fprintf(w, "%s\r\n", foldLine("<"+r.Address+">: "+diagnostic(r.LastError), softLineLimit))
		}
	}
	if len(delayed) > 0 {
		fmt.Fprintf(w, "\r\nYour message (queue ID %s, received %s) has not yet been delivered\r\n", m.ID, received)
		fmt.Fprintf(w, "to the following recipients:\r\n\r\n")
		for _, r := range delayed {
			why := diagnostic(r.LastError)
			if m.Held {
				why = "held for review by the mail administrator"
			} else if why == "" {
				why = "not yet attempted"
			}
			fmt.Fprintf(w, "%s\r\n", foldLine("<"+r.Address+">: "+why, softLineLimit))
		}
		if m.Held {
			fmt.Fprintf(w, "\r\nIt is kept until the mail administrator releases or removes it.\r\n")
			fmt.Fprintf(w, "Please do not send the message again.\r\n")
		} else {
			fmt.Fprintf(w, "\r\nNo action is needed: delivery goes on until %s, and you will\r\n", m.Expires.UTC().Format(time.RFC1123Z))
			fmt.Fprintf(w, "hear again only if it fails. Please do not send the message again.\r\n")
		}
	}

	status := textproto.MIMEHeader{}
	status.Set("Content-Type", "message/delivery-status")
	w, err = mw.CreatePart(status)
	if err != nil {
		return queue.Envelope{}, nil, err
	}
	fmt.Fprintf(w, "Reporting-MTA: dns; %s\r\n", b.Hostname)
	fmt.Fprintf(w, "X-Sealgate-Queue-ID: %s\r\n", m.ID)
	fmt.Fprintf(w, "Arrival-Date: %s\r\n", m.Received.Format(time.RFC1123Z))
	for _, r := range bounced {
		fmt.Fprintf(w, "\r\nFinal-Recipient: rfc822; %s\r\n", r.Address)
		if isDelayed(r) {
			fmt.Fprintf(w, "Action: delayed\r\n")
		} else {
			fmt.Fprintf(w, "Action: failed\r\n")
		}
		fmt.Fprintf(w, "Status: %s\r\n", dsnStatus(r))
		if r.RemoteMTA != "" {
			fmt.Fprintf(w, "Remote-MTA: dns; %s\r\n", r.RemoteMTA)
		}
		// The fields are header fields (RFC 3464 §2.1): a long
		// diagnostic is folded, never a line over 998 octets.
		if r.LastCode != 0 {
			fmt.Fprintf(w, "%s\r\n", foldLine("Diagnostic-Code: smtp; "+diagnostic(r.LastError), softLineLimit))
		} else if r.LastError != "" {
			fmt.Fprintf(w, "%s\r\n", foldLine("Diagnostic-Code: X-Sealgate; "+diagnostic(r.LastError), softLineLimit))
		}
		if !r.DoneAt.IsZero() {
			fmt.Fprintf(w, "Last-Attempt-Date: %s\r\n", r.DoneAt.Format(time.RFC1123Z))
		}
		if isDelayed(r) {
			fmt.Fprintf(w, "Will-Retry-Until: %s\r\n", m.Expires.Format(time.RFC1123Z))
		}
	}

	headers := textproto.MIMEHeader{}
	headers.Set("Content-Type", "text/rfc822-headers")
	w, err = mw.CreatePart(headers)
	if err != nil {
		return queue.Envelope{}, nil, err
	}
	w.Write(foldLongLines(originalHeader(original)))
	msg, err := rm.finish()
	if err != nil {
		return queue.Envelope{}, nil, err
	}
	env := queue.Envelope{
		From:       "",
		Recipients: []string{m.Envelope.From},
		IsDSN:      true,
	}
	return env, msg, nil
}

// dsnStatus is the RFC 3463 status for the report: a failed recipient
// without one gets the generic permanent failure; a delayed one a
// transient status (its last, or the generic one).
func dsnStatus(r queue.Recipient) string {
	switch {
	case isDelayed(r) && strings.HasPrefix(r.Status, "4."):
		return r.Status
	case isDelayed(r):
		return "4.0.0"
	case r.Status != "":
		return r.Status
	}
	return "5.0.0"
}

// isDelayed: r is still pending, so the report says it is delayed;
// any other recipient handed to the builder failed.
func isDelayed(r queue.Recipient) bool {
	return r.State == queue.StateQueued || r.State == queue.StateDeferred
}

func subjectFor(rcpts []queue.Recipient) string {
	failed := false
	for _, r := range rcpts {
		if r.Status == "4.4.7" {
			return "Undelivered Mail Returned to Sender (delivery time expired)"
		}
		failed = failed || !isDelayed(r)
	}
	if !failed {
		return "Delayed Mail (still being retried)"
	}
	return "Undelivered Mail Returned to Sender"
}

// originalHeader returns the header block of msg, up to and including
// the blank line, bounded by maxReturnedHeader (cut at a line end).
func originalHeader(msg []byte) []byte {
	end := bytes.Index(msg, []byte("\r\n\r\n"))
	if end < 0 {
		end = len(msg)
	} else {
		end += 2
	}
	h := msg[:end]
	if len(h) > maxReturnedHeader {
		h = h[:maxReturnedHeader]
		if i := bytes.LastIndex(h, []byte("\r\n")); i > 0 {
			h = h[:i+2]
		}
	}
	return h
}

func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}
