package delivery

import (
	"bytes"

	"github.com/emersion/go-smtp"
	"github.com/sealgate/sealgate/queue"
)

// transaction runs MAIL, RCPT per recipient and DATA. It returns an
// outcome per recipient, the last reply, and whether the connection is
// clean enough to reuse.
func (d *Deliverer) transaction(conn *outboundConn, req Request) ([]queue.RcptOutcome, string, bool) {
	c := conn.client
	opts := &smtp.MailOptions{Size: int64(len(req.Body)), UTF8: req.SMTPUTF8, RequireTLS: req.TLS.RequireTLSExtension}
	if req.TLS.RequireTLSExtension {
		if ok, _ := c.Extension("REQUIRETLS"); !ok {
			// RFC 8689 §4.2.1: a REQUIRETLS message must not be relayed to
			// a host that does not promise to keep requiring TLS.
			e := permErr("5.7.30", "REQUIRETLS support required: %s does not offer REQUIRETLS (RFC 8689)", conn.host)
			return allOutcomes(req.Recipients, e, conn.host), e.Msg, true
		}
	}
	if req.SMTPUTF8 {
		if ok, _ := c.Extension("SMTPUTF8"); !ok {
			e := permErr("5.6.7", "%s does not support SMTPUTF8, needed for non-ASCII addresses", conn.host)
			return allOutcomes(req.Recipients, e, conn.host), e.Msg, true
		}
	}
	if err := c.Mail(req.From, opts); err != nil {
		return allOutcomes(req.Recipients, asDeliveryError(err), conn.host), replyText(err), isSMTPReply(err)
	}
	outcomes := make([]queue.RcptOutcome, len(req.Recipients))
	var accepted []int
	last := ""
	for i, r := range req.Recipients {
		if err := c.Rcpt(r, nil); err != nil {
			outcomes[i] = outcomeFor(r, asDeliveryError(err), conn.host)
			last = replyText(err)
			if !isSMTPReply(err) {
				return fillRest(outcomes, req.Recipients, asDeliveryError(err), conn.host), last, false
			}
			continue
		}
		accepted = append(accepted, i)
	}
	if len(accepted) == 0 {
		return outcomes, last, c.Reset() == nil
	}
	err := d.sendData(c, req.Body)
	if err != nil {
		e := asDeliveryError(err)
		for _, i := range accepted {
			outcomes[i] = outcomeFor(req.Recipients[i], e, conn.host)
		}
		return outcomes, replyText(err), isSMTPReply(err) && c.Reset() == nil
	}
	for _, i := range accepted {
		outcomes[i] = queue.RcptOutcome{Address: req.Recipients[i], Delivered: true, Code: 250, Status: "2.0.0",
			Message: "250 accepted", RemoteMTA: conn.host}
	}
	return outcomes, "250 message accepted", true
}

func (d *Deliverer) sendData(c *smtp.Client, body []byte) error {
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(body); err != nil {
		w.Close()
		return err
	}
	if !bytes.HasSuffix(body, []byte("\r\n")) {
		w.Write([]byte("\r\n"))
	}
	return w.Close()
}

func outcomeFor(rcpt string, e *Error, host string) queue.RcptOutcome {
	return queue.RcptOutcome{Address: rcpt, Permanent: !e.Temporary, Code: e.Code, Status: e.Status, Message: e.Msg, RemoteMTA: host}
}

func allOutcomes(rcpts []string, e *Error, host string) []queue.RcptOutcome {
	out := make([]queue.RcptOutcome, len(rcpts))
	for i, r := range rcpts {
		out[i] = outcomeFor(r, e, host)
	}
	return out
}

func fillRest(out []queue.RcptOutcome, rcpts []string, e *Error, host string) []queue.RcptOutcome {
	for i := range out {
		if out[i].Address == "" {
			out[i] = outcomeFor(rcpts[i], e, host)
		}
	}
	return out
}

// cancelled is the result of a transaction cut short by the caller's
// context: what the server already settled (accepted, or refused for
// good) stands; every other recipient is deferred with 4.4.5, and the
// caller does not count that against it.
func cancelled(out []queue.RcptOutcome, rcpts []string, host string) []queue.RcptOutcome {
	e := tempErr("4.4.5", "delivery cancelled (the gateway is shutting down)")
	for i := range out {
		if !out[i].Delivered && !out[i].Permanent {
			out[i] = outcomeFor(rcpts[i], e, host)
		}
	}
	return out
}

// failAll reports the same failure for every recipient (DNS, connection).
func (d *Deliverer) failAll(req Request, att queue.Attempt, err error) (queue.Attempt, []queue.RcptOutcome) {
	e := asDeliveryError(err)
	att.Reply = e.Msg
	outcomes := allOutcomes(req.Recipients, e, "")
	d.logAttempt(req, att, outcomes)
	return att, outcomes
}

func (d *Deliverer) logAttempt(req Request, att queue.Attempt, outcomes []queue.RcptOutcome) {
	var delivered, deferred, bounced int
	for _, o := range outcomes {
		switch {
		case o.Delivered:
			delivered++
		case o.Permanent:
			bounced++
		default:
			deferred++
		}
	}
	d.opts.Logger.Info("delivery attempt",
		"queue_id", req.ID, "destination", att.Destination, "mx", att.MXHost, "ip", att.IP,
		"tls", att.TLSVersion, "cipher", att.Cipher, "verified", att.CertVerified,
		"delivered", delivered, "deferred", deferred, "bounced", bounced, "reply", att.Reply)
}
