package smtpin

import (
	"bytes"
	"crypto/tls"
	"log/slog"
	"net/mail"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/internal/mailtext"
	"github.com/sealgate/sealgate/policy"
	"github.com/sealgate/sealgate/queue"
)

// commit refuses loops, applies the policy (which may reject the
// message, hold it, or rewrite its header) and commits the message to
// the spool; only then does the client hear 250 with the queue ID.
func (c *conn) commit(log *slog.Logger, msg, body []byte) error {
	tx, opts := c.tx, c.srv.opts
	if headerLen(body) > maxHeaderBytes {
		// Every later step parses the header: 8 million one-byte fields
		// in a 48 MB message must not cost gigabytes.
		log.Warn("message refused: header too large", "size", len(body))
		return reply(552, 5, 3, 4, "Message header exceeds "+strconv.Itoa(maxHeaderBytes>>10)+" KiB")
	}
	if countHops(body) > maxHops {
		log.Warn("message refused: too many hops", "size", len(body))
		return toSMTPError(errTooManyHops, "")
	}
	bound := false
	if c.authUser == "" && len(c.tenants) > 0 {
		if err := c.bindHeader(log, body); err != nil {
			return err
		}
		bound = true
	}
	var decisions []queue.RcptDecision
	var asked *queue.Asked
	hold, chains, receipt := "", "", ""
	if opts.Policy != nil {
		if engine := opts.Policy(); engine != nil {
			trusted := c.authUser != "" || c.trusted || bound
			res, out := policy.Apply(engine, policy.Session{From: tx.from, Recipients: tx.rcpts, AuthUser: c.authUser,
				ClientIP: c.clientIP, Trusted: trusted}, body)
			if res.Reject != "" {
				log.Info("message rejected by policy", "rule", res.RejectRule)
				return toSMTPError(&replyError{Code: 550, Enhanced: smtp.EnhancedCode{5, 7, 1}, Public: mailtext.OneLine(res.Reject)}, "")
			}
			if !mailtext.SameBytes(out, body) { // the policy rewrote the header
				msg = append(append(make([]byte, 0, tx.trace+len(out)), msg[:tx.trace]...), out...)
			}
			hold, receipt = res.Hold, res.Receipt
			asked = &queue.Asked{Tags: res.Tags, SubjectUnread: res.SubjectUnread, Escalation: res.Escalation, Trusted: trusted}
			if len(res.ScanErrors) > 0 {
				log.Info("policy could not read the whole message; rules decided as if it matched", "why", strings.Join(res.ScanErrors, "; "))
			}
			for _, rd := range res.Recipients {
				decisions = append(decisions, queue.RcptDecision{Chain: rd.Chain.Strings(), Rules: rd.Rules, Reasons: rd.Reasons, By: rd.By})
				chains += " " + rd.Chain.String()
			}
		}
	}
	tlsDesc := ""
	if c.tls != nil {
		tlsDesc = certs.TLSVersionName(c.tls.Version) + " " + tls.CipherSuiteName(c.tls.CipherSuite)
	}
	env := queue.Envelope{
		ID:         tx.id,
		MessageID:  messageID(body),
		From:       tx.from,
		Recipients: tx.rcpts,
		ClientAddr: c.nc.RemoteAddr().String(),
		ClientHelo: c.helo,
		AuthUser:   c.authUser,
		TLS:        tlsDesc,
		RequireTLS: tx.requireTLS,
		Decisions:  decisions,
		Hold:       hold,
		Receipt:    receipt,
		Asked:      asked,
	}
	start := opts.Now()
	id, err := opts.Spool.Enqueue(c.ctx, env, msg)
	if err != nil {
		log.Error("message not spooled", "err", err, "size", len(msg))
		return toSMTPError(err, "")
	}
	log.Info("message queued", "queue_id", id, "size", len(msg), "tls", tlsDesc, "chains", strings.TrimSpace(chains), "hold", hold,
		"commit", opts.Now().Sub(start).Round(time.Microsecond).String())
	opts.OnQueued(id)
	if opts.OnAccepted != nil {
		opts.OnAccepted(env)
	}
	c.accepted++
	return reply(250, 2, 0, 0, "Ok: queued as "+id)
}

// messageID is the Message-ID of msg as one trimmed line (at most 998
// octets), for the audit trail; "" when there is none.
func messageID(msg []byte) string {
	n := headerLen(msg)
	hdr := append(append(make([]byte, 0, n+4), msg[:n]...), "\r\n\r\n"...)
	m, err := mail.ReadMessage(bytes.NewReader(hdr))
	if err != nil {
		return ""
	}
	id := mailtext.OneLine(strings.TrimSpace(m.Header.Get("Message-Id")))
	if len(id) > 998 {
		id = id[:998]
	}
	return id
}

// maxHeaderBytes bounds the header block of a message (Postfix's
// header_size_limit is 100 KiB and truncates; we refuse, so that what is
// relayed is what the policy saw).
const maxHeaderBytes = 1 << 20

// headerLen is the length of msg's header block (all of msg when it has
// no body).
func headerLen(msg []byte) int {
	if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
		return i
	}
	return len(msg)
}
