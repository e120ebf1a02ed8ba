package smtpin

import (
	"bytes"
	"crypto/tls"
	"errors"
	"strconv"
	"strings"

	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/internal/mailtext"
	"github.com/sealgate/sealgate/policy"
	"github.com/sealgate/sealgate/queue"
)

// The mail transaction: MAIL, RCPT, DATA or BDAT, each checked here and
// the message committed to the spool before the client hears 250.

// mail starts a transaction (RFC 5321 §4.1.1.2).
func (c *conn) mail(arg string) error {
	if c.helo == "" {
		return reply(503, 5, 5, 1, "Say EHLO first")
	}
	if c.tx != nil {
		return reply(503, 5, 5, 1, "Nested MAIL command")
	}
	path, params, err := splitPath(arg, "FROM:")
	if err != nil {
		return reply(501, 5, 5, 4, "Syntax: MAIL FROM:<address> [parameters]")
	}
	opts := c.srv.opts
	tx := &transaction{}
	for _, p := range params {
		key, value, _ := strings.Cut(p, "=")
		switch strings.ToUpper(key) {
		case "SIZE":
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil || n < 0 {
				return reply(501, 5, 5, 4, "Bad SIZE parameter")
			}
			if m := c.set.cfg.MaxMessageBytes; m > 0 && n > m {
				return reply(552, 5, 3, 4, "Message size exceeds fixed limit")
			}
			tx.size = n
		case "BODY":
			if v := strings.ToUpper(value); v != "7BIT" && v != "8BITMIME" {
				return reply(555, 5, 5, 4, "Unsupported BODY type")
			}
		case "SMTPUTF8":
			tx.utf8 = true
		case "REQUIRETLS":
			tx.requireTLS = true
		case "AUTH":
			// RFC 4954 §5: accepted and not passed on.
		default:
			return reply(555, 5, 5, 4, "Unsupported MAIL parameter "+sanitizeTrace(key))
		}
	}
	if c.tls == nil && c.set.cfg.RequireTLS && (!c.clientIP.IsLoopback() || opts.loopbackIsRemote) {
		return toSMTPError(errMustStartTLS, "")
	}
	if tx.requireTLS && c.tls == nil {
		// RFC 8689 §4.1: REQUIRETLS only on a session protected by TLS.
		return toSMTPError(errRequireTLSPlaintext, "")
	}
	if !tx.utf8 && !mailtext.IsASCII(path) {
		return toSMTPError(errNeedSMTPUTF8, "")
	}
	var fromDomain string
	if path != "" {
		if tx.from, fromDomain, err = mailtext.CanonicalAddress(path); err != nil {
			return addressError("sender", err)
		}
	}
	if c.authUser == "" && len(c.tenants) > 0 {
		if tx.tenants, err = c.bindEnvelope(fromDomain); err != nil {
			return err
		}
	}
	if err := c.srv.roomFor(tx.size); err != nil {
		c.srv.opts.Logger.Warn("transaction refused: no room", "client", c.clientIP.String(), "reason", err.Error())
		return reply(452, 4, 3, 1, "Insufficient system resources, try again later")
	}
	if !c.srv.beginTransaction() {
		return toSMTPError(errShuttingDown, "")
	}
	c.tx = tx
	return reply(250, 2, 1, 0, "Ok")
}

// rcpt adds a recipient (RFC 5321 §4.1.1.3). Relay authorisation
// happens here, per RFC 5321 §3.6.1.
func (c *conn) rcpt(arg string) error {
	if c.tx == nil {
		return reply(503, 5, 5, 1, "Need MAIL before RCPT")
	}
	path, params, err := splitPath(arg, "TO:")
	if err != nil || path == "" {
		return reply(501, 5, 5, 4, "Syntax: RCPT TO:<address>")
	}
	if len(params) > 0 {
		return reply(555, 5, 5, 4, "Unsupported RCPT parameter")
	}
	if c.authUser == "" && len(c.tenants) > 0 {
		// A tenant's network: MAIL has already bound the sender; the
		// tenant's networks never count as trusted networks.
	} else if d := policy.MayRelay(c.clientIP, c.authUser, c.set.trusted); !d.Allowed {
		c.srv.opts.Logger.Warn("relay denied", "client", c.clientIP.String(), "helo", c.helo, "rcpt", sanitizeTrace(path), "reason", d.Reason)
		return toSMTPError(errRelayDenied, "")
	}
	if !c.tx.utf8 && !mailtext.IsASCII(path) {
		return toSMTPError(errNeedSMTPUTF8, "")
	}
	addr, domain, err := mailtext.CanonicalAddress(path)
	switch {
	case err != nil:
		return addressError("recipient", err)
	case domain == "":
		return toSMTPError(errNoDomain, "")
	case strings.HasPrefix(domain, "["):
		return reply(553, 5, 1, 3, "Address literals are not relayed")
	}
	if m := c.set.cfg.MaxRecipients; m > 0 && len(c.tx.rcpts) >= m {
		return reply(452, 4, 5, 3, "Too many recipients")
	}
	c.tx.rcpts = append(c.tx.rcpts, addr)
	return reply(250, 2, 1, 5, "Ok")
}

func addressError(which string, err error) *smtp.SMTPError {
	if errors.Is(err, mailtext.ErrControlChar) {
		return reply(501, 5, 1, 3, "Control characters are not allowed in the "+which+" address")
	}
	if which == "sender" {
		return reply(501, 5, 1, 7, "Bad sender address syntax")
	}
	return reply(501, 5, 1, 3, "Bad recipient address syntax")
}

// splitPath reads "FROM:<path> params…" (or "TO:"): the path between the
// angle brackets, not yet checked, and the ESMTP parameters after it.
func splitPath(arg, keyword string) (string, []string, error) {
	if len(arg) < len(keyword) || !strings.EqualFold(arg[:len(keyword)], keyword) {
		return "", nil, errors.New("no " + keyword)
	}
	rest := strings.TrimLeft(arg[len(keyword):], " ")
	if !strings.HasPrefix(rest, "<") {
		return "", nil, errors.New("no <")
	}
	end := closingBracket(rest)
	if end < 0 {
		return "", nil, errors.New("no >")
	}
	path, after := rest[1:end], rest[end+1:]
	if after != "" && after[0] != ' ' {
		return "", nil, errors.New("junk after >")
	}
	return path, strings.Fields(after), nil
}

// closingBracket finds the ">" that ends the path, skipping any inside a
// quoted local part ("a>b"@x).
func closingBracket(s string) int {
	quoted := false
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if quoted {
				i++
			}
		case '"':
			quoted = !quoted
		case '>':
			if !quoted {
				return i
			}
		}
	}
	return -1
}

// endTransaction abandons the transaction and gives back what it held.
func (c *conn) endTransaction() {
	if c.tx == nil {
		return
	}
	c.srv.budget.give(c.tx.held)
	c.srv.active.Done()
	c.tx = nil
}

// reserveDeclared takes the budget for the size the client declared
// (SIZE=) before the body comes; false when the budget cannot hold it.
// Without a declared size (or one over the limit, refused later) there
// is nothing to take now.
func (c *conn) reserveDeclared() bool {
	tx := c.tx
	m := c.set.cfg.MaxMessageBytes
	if tx.size <= 0 || (m > 0 && tx.size > m) || tx.held >= int(tx.size) {
		return true
	}
	if !c.srv.budget.take(int(tx.size) - tx.held) {
		return false
	}
	tx.held = int(tx.size)
	return true
}

// newBody starts the buffer a message is read into. Everything the
// Received header says is known before the first byte, so it goes first:
// in the common case the body is never copied again.
func (c *conn) newBody() *bodySink {
	c.tx.id = queue.NewID(c.srv.opts.Now())
	facts := receivedFacts{Helo: c.helo, ClientIP: c.clientIP.String(), Hostname: c.srv.opts.Hostname, ID: c.tx.id,
		AuthUser: c.authUser, Recipients: c.tx.rcpts, Time: c.srv.opts.Now()}
	if c.tls != nil {
		facts.TLSVersion, facts.Cipher = certs.TLSVersionName(c.tls.Version), tls.CipherSuiteName(c.tls.CipherSuite)
	}
	trace := receivedHeader(facts)
	body := &bytes.Buffer{}
	tx := c.tx
	if tx.size > 0 && (tx.held >= int(tx.size) || c.reserveDeclared() && tx.held >= int(tx.size)) {
		// The client said how large (SIZE=): one buffer of that size
		// instead of doubling into garbage, its room held at once.
		body.Grow(len(trace) + int(tx.size) + 2)
	}
	body.Write(trace)
	tx.body, tx.trace = body, body.Len()
	sink := &bodySink{dst: body, limit: c.set.cfg.MaxMessageBytes}
	sink.reserve = func(total int) bool {
		if total <= tx.held {
			return true
		}
		// Reserve in steps, so the budget is not asked per line.
		want := max(total, tx.held+256<<10)
		if !c.srv.budget.take(want - tx.held) {
			if !c.srv.budget.take(total - tx.held) {
				return false
			}
			want = total
		}
		tx.held = want
		return true
	}
	c.tx.chunks = sink
	return sink
}

// data receives a message after DATA (RFC 5321 §4.1.1.4).
func (c *conn) data(arg string) error {
	switch {
	case c.br.Buffered() > 0:
		// RFC 2920 §3.1: DATA ends a pipelined group; content may only
		// follow our 354. A client that does not wait is a bulk sender
		// or a smuggling attempt. Checked first: when DATA fails too,
		// that content must not be read as commands.
		return &replyErr{reply(554, 5, 5, 0, "Protocol error: message content sent before the 354 reply"), errContentBefore}
	case arg != "":
		return reply(501, 5, 5, 4, "Syntax: DATA")
	case c.tx == nil:
		return reply(503, 5, 5, 1, "Need MAIL and RCPT before DATA")
	case len(c.tx.rcpts) == 0:
		return reply(554, 5, 5, 1, "No valid recipients")
	case c.tx.body != nil:
		return reply(503, 5, 5, 1, "DATA not allowed after BDAT")
	}
	if !c.reserveDeclared() {
		// The client said how large (SIZE=) and the node's budget cannot
		// hold it now: refused before a byte is read, not after the whole
		// body has been received into a buffer that grows.
		return reply(452, 4, 3, 1, "Insufficient system resources, try again later")
	}
	c.writeReply(&smtp.SMTPError{Code: 354, EnhancedCode: smtp.NoEnhancedCode, Message: "End data with <CR><LF>.<CR><LF>"})
	c.flush()
	sink := c.newBody()
	c.dc.cap = c.dataCap()
	err := readData(c.br, sink, c.set.cfg.MaxLineLength)
	c.dc.cap = c.sessionCap()
	if err != nil {
		return c.transferFailed("DATA", err)
	}
	return c.finishMessage()
}

// bdat receives one chunk (RFC 3030). Its octets are read whatever the
// state, so that they are never taken for commands.
func (c *conn) bdat(arg string) error {
	fields := strings.Fields(arg)
	var n int64 = -1
	if len(fields) >= 1 && len(fields) <= 2 {
		n = chunkSize(fields[0])
	}
	last := len(fields) == 2 && strings.EqualFold(fields[1], "LAST")
	if n < 0 || len(fields) == 2 && !last {
		return &replyErr{reply(501, 5, 5, 4, "Syntax: BDAT size [LAST]; closing connection"), errBadChunkLength}
	}
	if c.tx == nil || len(c.tx.rcpts) == 0 {
		sink := &bodySink{dst: &bytes.Buffer{}, limit: 1}
		if err := readChunk(c.br, sink, n); err != nil {
			return c.transferFailed("BDAT", err)
		}
		return reply(503, 5, 5, 1, "Need MAIL and RCPT before BDAT")
	}
	sink := c.tx.chunks
	if sink == nil {
		sink = c.newBody()
	}
	c.dc.cap = c.dataCap()
	err := readChunk(c.br, sink, n)
	c.dc.cap = c.sessionCap()
	if err != nil {
		return c.transferFailed("BDAT", err)
	}
	if !last {
		return reply(250, 2, 0, 0, strconv.FormatInt(n, 10)+" octets received")
	}
	if !sink.flags.tooBig && !sink.flags.noMemory {
		body := c.tx.body.Bytes()[c.tx.trace:]
		sink.flags.bareLineEnding = mailtext.HasBareLineEnding(body)
		sink.flags.longLine = hasLongLine(body, c.set.cfg.MaxLineLength)
	}
	return c.finishMessage()
}

// chunkSize reads a BDAT chunk-size (RFC 3030 §2: 1*DIGIT); -1 when it
// is anything else or does not fit, since such a chunk cannot be read
// past.
func chunkSize(s string) int64 {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return -1
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// transferFailed ends a connection whose message content did not arrive
// whole (a timeout, a reset): what the client sends next cannot be known
// to be a command, so nothing more is read.
func (c *conn) transferFailed(what string, err error) error {
	c.srv.opts.Logger.Info("message transfer failed; connection closed", "client", c.clientIP.String(), "phase", what, "err", err.Error())
	return &replyErr{reply(421, 4, 4, 2, "Timeout or error during "+what+", closing connection"), err}
}

// finishMessage checks the received message, applies the policy and
// commits it to the spool; the reply says how it went.
func (c *conn) finishMessage() error {
	defer c.endTransaction()
	tx, opts := c.tx, c.srv.opts
	flags := tx.chunks.flags
	log := opts.Logger.With("client", c.clientIP.String(), "helo", c.helo, "from", tx.from, "rcpts", len(tx.rcpts), "auth", c.authUser)
	switch {
	case flags.tooBig:
		log.Info("message refused: over the size limit", "size", flags.size)
		return reply(552, 5, 3, 4, "Message size exceeds fixed limit")
	case flags.noMemory:
		log.Warn("message refused: the node's byte budget for messages in flight is exhausted", "size", flags.size)
		return reply(452, 4, 3, 1, "Insufficient system resources, try again later")
	case flags.nul:
		log.Warn("message refused: NUL in content (SMTP smuggling defence)", "size", flags.size)
		return reply(554, 5, 6, 0, "Message contains NUL characters")
	case flags.longLine:
		log.Info("message refused: line too long", "size", flags.size)
		return reply(554, 5, 6, 0, "Message has lines longer than "+strconv.Itoa(c.set.cfg.MaxLineLength)+" octets")
	}
	msg, body := tx.body.Bytes(), tx.body.Bytes()[tx.trace:]
	if flags.bareLineEnding {
		if c.set.cfg.BareLineEndings != "normalize" {
			log.Warn("message refused: bare CR or LF (SMTP smuggling defence)", "size", len(body))
			return toSMTPError(errBareLineEnding, "")
		}
		body = mailtext.NormalizeLineEndings(body)
		msg = append(append(make([]byte, 0, tx.trace+len(body)), msg[:tx.trace]...), body...)
	}
	return c.commit(log, msg, body)
}
