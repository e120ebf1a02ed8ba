package delivery

// What a delivery attempt reports: one outcome per recipient, and the
// log line of the attempt.

import (
	"errors"

	"github.com/sealgate/sealgate/internal/dnsres"
	"github.com/sealgate/sealgate/queue"
)

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

// failAll reports the same failure for every recipient (DNS, connection)
// of an attempt that opened no session with a mail server.
func (d *Deliverer) failAll(req Request, att queue.Attempt, err error) (queue.Attempt, []queue.RcptOutcome) {
	e := asDeliveryError(err)
	att.Reply = e.Msg
	att.NoConnection = whyNoConnection(err, e)
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

// whyNoConnection says in a few words why an attempt opened no session
// (the record's NoConnection; its Reply has the detail).
func whyNoConnection(err error, e *Error) string {
	var dnsErr *dnsres.Error
	if errors.As(err, &dnsErr) {
		return "DNS lookup failed"
	}
	switch e.Status {
	case "4.7.5":
		return "TLS requirement not met"
	case "4.4.5":
		return "delivery cancelled"
	case "5.4.6":
		return "mail loop"
	case "4.4.4":
		return "no mail host address may be dialled"
	}
	if e.NoSession != "" {
		return "no mail host took a session: " + e.NoSession
	}
	return "no mail host took a session"
}
