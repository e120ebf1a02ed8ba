package delivery

// One mail transaction on an open session (RFC 5321 §3.3): MAIL, a RCPT
// per recipient, then the body with DATA or, where the server offers
// CHUNKING, with BDAT (RFC 3030). Where the server offers PIPELINING
// (RFC 2920) the envelope goes in one flight and the replies are read in
// order afterwards; without it, one command at a time.

import (
	"io"
	"strconv"
	"strings"

	"github.com/sealgate/sealgate/queue"
)

const (
	// maxPipelined bounds the commands in flight before their replies are
	// read, so that neither side's socket buffer fills with the other
	// waiting (RFC 2920 §3.1).
	maxPipelined = 100
	// bdatChunkSize is the largest BDAT chunk.
	bdatChunkSize = 1 << 20
)

// transaction runs MAIL, RCPT per recipient and the body. It returns an
// outcome per recipient, the last reply, and whether the connection is
// clean enough to reuse.
func (d *Deliverer) transaction(conn *outboundConn, req Request) ([]queue.RcptOutcome, string, bool) {
	s := conn.sess
	if req.TLS.RequireTLSExtension {
		if ok, _ := s.extension("REQUIRETLS"); !ok {
			// RFC 8689 §4.2.1: a REQUIRETLS message must not be relayed to
			// a host that does not promise to keep requiring TLS.
			e := permErr("5.7.30", "REQUIRETLS support required: %s does not offer REQUIRETLS (RFC 8689)", conn.host)
			return allOutcomes(req.Recipients, e, conn.host), e.Msg, true
		}
	}
	if req.SMTPUTF8 {
		if ok, _ := s.extension("SMTPUTF8"); !ok {
			e := permErr("5.6.7", "%s does not support SMTPUTF8, needed for non-ASCII addresses", conn.host)
			return allOutcomes(req.Recipients, e, conn.host), e.Msg, true
		}
	}
	if strings.ContainsAny(req.From, "\r\n") {
		e := permErr("5.1.7", "bad sender address %q", req.From)
		return allOutcomes(req.Recipients, e, conn.host), e.Msg, true
	}
	chunking, _ := s.extension("CHUNKING")
	chunking = chunking && !d.noChunking

	// The envelope: MAIL, the RCPTs we may send, and DATA unless BDAT
	// follows. A recipient whose address cannot be written on a command
	// line is refused here and never sent.
	eight := false
	if ok, _ := s.extension("8BITMIME"); ok {
		var err error
		if eight, err = BodyHas8bit(req.Body); err != nil {
			// The body cannot be read: nothing is sent, the session
			// stays usable, the recipients wait.
			e := asDeliveryError(bodyError(&bodyReadError{err}))
			return allOutcomes(req.Recipients, e, conn.host), e.Msg, true
		}
	}
	outcomes := make([]queue.RcptOutcome, len(req.Recipients))
	cmds := make([]string, 0, len(req.Recipients)+2)
	cmds = append(cmds, d.mailCommand(s, req, eight))
	rcptCmd := make([]int, len(req.Recipients)) // index into cmds, or -1
	last := ""
	for i, r := range req.Recipients {
		if strings.ContainsAny(r, "\r\n") {
			e := permErr("5.1.3", "bad recipient address %q", r)
			outcomes[i], last, rcptCmd[i] = outcomeFor(r, e, conn.host), e.Msg, -1
			continue
		}
		rcptCmd[i] = len(cmds)
		cmds = append(cmds, "RCPT TO:<"+r+">")
	}
	if !chunking {
		cmds = append(cmds, "DATA")
	}
	replies, err := s.envelope(cmds, !chunking)

	if len(replies) == 0 {
		return allOutcomes(req.Recipients, asDeliveryError(err), conn.host), replyText(err), false
	}
	// A 354 to a DATA that has no recipient behind it (a server that
	// breaks RFC 2920 §3.1) leaves the server reading a message: the
	// connection is not reused.
	dataOpen := !chunking && len(replies) == len(cmds) && replies[len(cmds)-1].code == 354
	if mailErr := replies[0].expect(250); mailErr != nil {
		return allOutcomes(req.Recipients, asDeliveryError(mailErr), conn.host), replyText(mailErr), err == nil && !dataOpen
	}
	var accepted []int
	for i, r := range req.Recipients {
		c := rcptCmd[i]
		if c < 0 {
			continue
		}
		if c >= len(replies) {
			last = replyText(err)
			return fillRest(outcomes, req.Recipients, asDeliveryError(err), conn.host), last, false
		}
		if rerr := replies[c].expect(25); rerr != nil {
			outcomes[i] = outcomeFor(r, asDeliveryError(rerr), conn.host)
			last = replyText(rerr)
			continue
		}
		accepted = append(accepted, i)
	}
	if len(accepted) == 0 {
		return outcomes, last, err == nil && !dataOpen && s.reset() == nil
	}
	settle := func(e *Error) {
		for _, i := range accepted {
			outcomes[i] = outcomeFor(req.Recipients[i], e, conn.host)
		}
	}
	if !chunking {
		if len(replies) < len(cmds) {
			settle(asDeliveryError(err))
			return outcomes, replyText(err), false
		}
		if derr := replies[len(cmds)-1].expect(354); derr != nil {
			settle(asDeliveryError(derr))
			return outcomes, replyText(derr), s.reset() == nil
		}
	}
	var (
		done  reply
		final error
	)
	if chunking {
		done, final = s.bdat(req.Body, d.bdatChunk())
	} else {
		done, final = s.data(req.Body)
	}
	if final != nil {
		settle(asDeliveryError(final))
		return outcomes, replyText(final), isSMTPReply(final) && s.reset() == nil
	}
	// The record keeps the destination's own words ("250 2.0.0 Ok:
	// queued as 4XbK…"): its queue ID is what its admin will ask for.
	text, status := done.text(), done.status()
	for _, i := range accepted {
		outcomes[i] = queue.RcptOutcome{Address: req.Recipients[i], Delivered: true, Code: done.code, Status: status,
			Message: text, RemoteMTA: conn.host}
	}
	return outcomes, text, true
}

// mailCommand is MAIL FROM with its parameters: BODY=8BITMIME when the
// body has 8-bit bytes and the server offers 8BITMIME (RFC 6152), SIZE
// when it offers SIZE (RFC 1870), REQUIRETLS (RFC 8689) and SMTPUTF8
// (RFC 6531) when the message needs them (transaction checked that the
// server offers them).
func (d *Deliverer) mailCommand(s *session, req Request, eight bool) string {
	var b strings.Builder
	b.Grow(len(req.From) + 64)
	b.WriteString("MAIL FROM:<")
	b.WriteString(req.From)
	b.WriteString(">")
	if eight {
		b.WriteString(" BODY=8BITMIME")
	}
	if ok, _ := s.extension("SIZE"); ok && req.Body.Size() > 0 {
		b.WriteString(" SIZE=")
		b.WriteString(strconv.FormatInt(req.Body.Size(), 10))
	}
	if req.TLS.RequireTLSExtension {
		b.WriteString(" REQUIRETLS")
	}
	if req.SMTPUTF8 {
		b.WriteString(" SMTPUTF8")
	}
	return b.String()
}

func (d *Deliverer) bdatChunk() int {
	if d.bdatChunkSize > 0 {
		return d.bdatChunkSize
	}
	return bdatChunkSize
}

// envelope sends the envelope commands and returns the replies read, in
// order, and the transport error that stopped it, if any. With
// PIPELINING they go in one flight (at most maxPipelined unanswered);
// without, one at a time, stopping after a refused MAIL and before a
// DATA that no accepted RCPT needs. data says the last command is DATA.
func (s *session) envelope(cmds []string, data bool) ([]reply, error) {
	replies := make([]reply, 0, len(cmds))
	if ok, _ := s.extension("PIPELINING"); ok {
		for i, line := range cmds {
			if err := s.command(line); err != nil {
				return replies, err
			}
			if i+1-len(replies) < maxPipelined && i+1 < len(cmds) {
				continue
			}
			if err := s.w.Flush(); err != nil {
				return replies, err
			}
			for len(replies) <= i {
				r, err := s.readReply()
				if err != nil {
					return replies, err
				}
				replies = append(replies, r)
			}
		}
		return replies, nil
	}
	for i, line := range cmds {
		if i > 0 && replies[0].expect(250) != nil {
			break
		}
		if data && i == len(cmds)-1 && !anyAccepted(replies[1:]) {
			break
		}
		r, err := s.exchange(line)
		if err != nil {
			return replies, err
		}
		replies = append(replies, r)
	}
	return replies, nil
}

func anyAccepted(rcpts []reply) bool {
	for _, r := range rcpts {
		if r.expect(25) == nil {
			return true
		}
	}
	return false
}

// data sends the body after a 354, dot-stuffed, and returns the reply
// to the final "." (an error unless it is a 250).
func (s *session) data(body Body) (reply, error) {
	if ps, ok := pieces(body); ok {
		dw := newDotWriter(s.w)
		for _, p := range ps {
			if _, err := dw.Write(p); err != nil {
				return reply{}, err
			}
		}
		return s.endData(dw)
	}
	r, err := body.Open()
	if err != nil {
		return reply{}, bodyError(&bodyReadError{err})
	}
	defer r.Close()
	dw := newDotWriter(s.w)
	buf := make([]byte, min(body.Size()+1, 32<<10))
	if _, err := io.CopyBuffer(dw, bodyReader{r}, buf); err != nil {
		// A body that cannot be read to its end never gets its final
		// ".": the connection closes and the server drops the
		// transaction, instead of delivering a message cut short.
		return reply{}, bodyError(err)
	}
	return s.endData(dw)
}

// endData writes the terminating "." and reads the reply to the message.
func (s *session) endData(dw *dotWriter) (reply, error) {
	if err := dw.Close(); err != nil {
		return reply{}, err
	}
	if err := s.w.Flush(); err != nil {
		return reply{}, err
	}
	rep, err := s.readReply()
	if err != nil {
		return rep, err
	}
	return rep, rep.expect(250)
}

// bdat sends the body in BDAT chunks of at most chunk bytes, the last
// with LAST (RFC 3030 §2): no dot-stuffing, each chunk's size exact.
// With PIPELINING every chunk goes without waiting and the replies are
// read afterwards (a server discards the chunks after a refused one,
// §4.2); without it, each chunk waits for its reply. It returns the
// reply to the last chunk (an error unless every chunk got a 250). A
// body that cannot be read to its end never gets its LAST chunk.
func (s *session) bdat(body Body, chunk int) (reply, error) {
	var chunks chunker
	if ps, ok := pieces(body); ok && wholeLinesPieces(ps) {
		chunks = &pieceChunks{pieces: ps, size: chunk}
	} else {
		rc, err := body.Open()
		if err != nil {
			return reply{}, bodyError(&bodyReadError{err})
		}
		defer rc.Close()
		chunks = newBDATChunks(bodyReader{rc}, body.Size(), chunk)
	}
	pipelined, _ := s.extension("PIPELINING")
	sent := 0
	var last reply
	for {
		data, isLast, err := chunks.next()
		if err != nil {
			return reply{}, bodyError(&bodyReadError{err})
		}
		n := 0
		for _, d := range data {
			n += len(d)
		}
		line := "BDAT " + strconv.Itoa(n)
		if isLast {
			line += " LAST"
		}
		s.command(line)
		for _, d := range data {
			if _, err := s.w.Write(d); err != nil {
				return reply{}, err
			}
		}
		sent++
		if pipelined && !isLast {
			continue
		}
		if err := s.w.Flush(); err != nil {
			return reply{}, err
		}
		for ; sent > 0; sent-- {
			r, err := s.readReply()
			if err != nil {
				return r, err
			}
			last = r
			if refused := r.expect(250); refused != nil {
				// Pipelined: the chunks still in flight are refused too;
				// read their replies so that RSET finds the session in
				// step (if that fails, RSET fails and the connection
				// goes).
				for sent--; sent > 0; sent-- {
					if _, err := s.readReply(); err != nil {
						break
					}
				}
				return r, refused
			}
		}
		if isLast {
			return last, nil
		}
	}
}
