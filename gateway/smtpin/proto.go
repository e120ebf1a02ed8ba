package smtpin

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/policy"
)

// maxBadCommands is how many unknown or out-of-order commands a
// connection may send before it is closed.
const maxBadCommands = 10

// pressureIdle is the idle timeout outside a transaction while most
// connection slots are taken.
const pressureIdle = 10 * time.Second

// conn is one SMTP connection from the tenant: the protocol state
// machine (this file) and the transaction it carries (session.go). One
// goroutine runs it from greeting to close.
type conn struct {
	srv      *Server
	set      *settings // the settings the connection started under
	raw      net.Conn  // the socket, set once: what Shutdown cuts
	nc       net.Conn  // the socket, or the TLS connection over it
	dc       *deadlineConn
	br       *bufio.Reader
	bw       *bufio.Writer
	tls      *tls.ConnectionState
	clientIP netip.Addr
	trusted  bool // from a trusted network (before AUTH)
	// tenants whose networks hold the client: unless it authenticates,
	// it relays only under one of their bindings.
	tenants  []*policy.Tenant
	ctx      context.Context
	cancel   context.CancelFunc
	started  time.Time
	helo     string
	authUser string
	authFail int
	bad      int
	accepted int          // messages committed on this connection
	tx       *transaction // nil between transactions
}

// transaction is what MAIL, RCPT and DATA/BDAT build up.
type transaction struct {
	id         string // the queue ID the message will get (named in Received)
	from       string
	rcpts      []string
	utf8       bool
	requireTLS bool
	size       int64 // SIZE= declared by the client, 0 if none
	// BDAT in progress: the content so far and its flags.
	chunks *bodySink
	body   *bytes.Buffer
	trace  int // length of the Received header at the start of body
	held   int // bytes of the node's budget held for body
	// tenants whose binding the envelope satisfied (a tenant-network
	// client only); the header must satisfy one of them too.
	tenants []*policy.Tenant
}

// replyErr is a reply that also ends the connection.
type replyErr struct {
	reply *smtp.SMTPError
	cause error
}

func (e *replyErr) Error() string { return e.reply.Message + ": " + e.cause.Error() }

// serve runs the connection. It returns when the client quits, the
// connection fails or times out, or the server stops.
func (c *conn) serve() {
	defer c.close()
	opts := c.srv.opts
	listener := "starttls"
	if _, ok := c.nc.(*tls.Conn); ok {
		listener = "implicit-tls"
	}
	// A line per connection, as an admin debugging a connector expects:
	// who came, on which listener, and at the end how long and what for.
	opts.Logger.Info("connection", "client", c.clientIP.String(), "listener", listener, "trusted", c.trusted)
	defer func() {
		opts.Logger.Info("disconnected", "client", c.clientIP.String(), "helo", c.helo, "auth", c.authUser,
			"tls", c.tls != nil, "duration", opts.Now().Sub(c.started).Round(time.Millisecond).String(),
			"messages", c.accepted, "errors", c.bad)
	}()
	if tc, ok := c.nc.(*tls.Conn); ok {
		tc.SetDeadline(time.Now().Add(c.set.cfg.IdleTimeout.D()))
		if err := c.handshake(tc, listener); err != nil {
			return
		}
		tc.SetDeadline(time.Time{})
		st := tc.ConnectionState()
		c.tls = &st
	}
	if c.talkedEarly() {
		c.srv.opts.Logger.Warn("client talked before the greeting; disconnected", "client", c.clientIP.String())
		c.replyAndClose(&smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 5, 1},
			Message: "Protocol error: you talked before the greeting"})
		return
	}
	c.writeReply(&smtp.SMTPError{Code: 220, EnhancedCode: smtp.NoEnhancedCode, Message: opts.Hostname + " ESMTP ready"})
	idle := c.set.cfg.IdleTimeout.D()
	for {
		// Under pressure (most slots taken), a client without a
		// transaction that has a recipient gets a short idle time: it must not hold a slot
		// doing nothing while others are refused.
		c.dc.idle = idle
		if (c.tx == nil || len(c.tx.rcpts) == 0) && c.srv.limits.underPressure() {
			c.dc.idle = min(idle, pressureIdle)
		}
		line, err := readCommand(c.br, c.set.cfg.MaxLineLength)
		if err != nil {
			c.readFailed(err)
			return
		}
		if quit := c.dispatch(line); quit {
			return
		}
	}
}

// talkedEarly waits greet_pause (clients outside trusted networks only)
// and reports whether the client sent anything before our greeting, as
// Postfix's postscreen does: a real client waits for the 220.
func (c *conn) talkedEarly() bool {
	wait := time.Millisecond
	if p := c.set.cfg.GreetPause.D(); p > 0 && !c.trusted {
		wait = p
	}
	c.dc.cap = time.Now().Add(wait)
	_, err := c.br.Peek(1)
	c.dc.cap = c.sessionCap()
	return err == nil
}

// sessionCap is the hard limit of the session outside DATA and BDAT.
func (c *conn) sessionCap() time.Time {
	if st := c.set.cfg.SessionTimeout.D(); st > 0 {
		return c.started.Add(st)
	}
	return time.Time{}
}

// dataCap is the hard limit for receiving one message: ten minutes plus
// the size limit at 32 KiB/s, so that a slow but steady upload of the
// largest message fits, and never less than the session's own limit.
func (c *conn) dataCap() time.Time {
	d := 10*time.Minute + time.Duration(c.set.cfg.MaxMessageBytes/(32<<10))*time.Second
	end := time.Now().Add(d)
	if s := c.sessionCap(); s.After(end) {
		end = s
	}
	return end
}

// readFailed answers a failed command read, when an answer still makes
// sense, and logs why the connection ends.
func (c *conn) readFailed(err error) {
	log := c.srv.opts.Logger.With("client", c.clientIP.String(), "helo", c.helo)
	var ne net.Error
	switch {
	case errors.Is(err, errLineTooLong):
		c.replyAndClose(&smtp.SMTPError{Code: 500, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "Line too long, closing connection"})
	case errors.Is(err, errBareInCommand):
		log.Warn("bare CR or LF in a command; disconnected (SMTP smuggling defence)")
		c.replyAndClose(&smtp.SMTPError{Code: 500, EnhancedCode: smtp.EnhancedCode{5, 5, 2},
			Message: "Command lines must end in CRLF and hold no other CR or LF; closing connection"})
	case errors.As(err, &ne) && ne.Timeout():
		c.replyAndClose(&smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Timeout, closing connection"})
	}
}

// dispatch runs one command and reports whether the connection ends.
func (c *conn) dispatch(line string) bool {
	verb, arg, _ := strings.Cut(line, " ")
	verb = strings.ToUpper(verb)
	var err error
	if strings.IndexByte(line, 0) >= 0 && verb != "MAIL" && verb != "RCPT" {
		// In MAIL and RCPT the address check answers 501 5.1.3; anywhere
		// else a NUL has no business either, and is never passed on.
		verb = "\x00"
	}
	switch verb {
	case "\x00":
		err = reply(501, 5, 5, 2, "NUL in command")
	case "EHLO", "HELO":
		err = c.hello(verb, strings.TrimSpace(arg))
	case "STARTTLS":
		err = c.startTLS(arg)
	case "AUTH":
		err = c.auth(arg)
	case "MAIL":
		err = c.mail(arg)
	case "RCPT":
		err = c.rcpt(arg)
	case "DATA":
		err = c.data(arg)
	case "BDAT":
		err = c.bdat(arg)
	case "RSET":
		c.endTransaction()
		err = reply(250, 2, 0, 0, "Ok")
	case "NOOP":
		err = reply(250, 2, 0, 0, "Ok")
	case "VRFY":
		err = reply(252, 2, 5, 2, "Cannot VRFY user, but will accept message and attempt delivery")
	case "HELP":
		err = reply(214, 2, 0, 0, "See RFC 5321")
	case "QUIT":
		c.replyAndClose(&smtp.SMTPError{Code: 221, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Bye"})
		return true
	case "EXPN", "TURN", "ETRN":
		err = reply(502, 5, 5, 1, "Command not implemented")
	default:
		c.bad++
		err = reply(500, 5, 5, 2, "Command not recognized")
	}
	var fatal *replyErr
	if errors.As(err, &fatal) {
		c.replyAndClose(fatal.reply)
		return true
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		// Refusals of a message (after DATA or BDAT) and of AUTH (which
		// has its own limit) are the client's content, not its errors;
		// every other 5xx counts, relay refusals included, as Postfix's
		// error limit does.
		if se.Code >= 500 && verb != "DATA" && verb != "BDAT" && verb != "AUTH" {
			c.bad++
		}
		if c.bad >= maxBadCommands {
			c.replyAndClose(&smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many errors, closing connection"})
			return true
		}
		if se.Code == 421 {
			c.replyAndClose(se)
			return true
		}
		c.writeReply(se)
		return false
	}
	if err != nil { // the transport failed
		return true
	}
	return false
}

func reply(code, a, b, d int, msg string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{a, b, d}, Message: msg}
}

// writeReply sends a reply; it is flushed unless more pipelined
// commands are waiting (RFC 2920 §3.2: the server may hold replies while
// input is pending, and must flush before it would block).
func (c *conn) writeReply(r *smtp.SMTPError) {
	// Every write may flush a full buffer: each gets a fresh deadline.
	c.nc.SetWriteDeadline(time.Now().Add(max(c.set.cfg.IdleTimeout.D(), time.Second)))
	lines := strings.Split(r.Message, "\n")
	for i, l := range lines {
		sep := " "
		if i < len(lines)-1 {
			sep = "-"
		}
		if r.EnhancedCode == smtp.NoEnhancedCode || r.EnhancedCode == smtp.EnhancedCodeNotSet {
			fmt.Fprintf(c.bw, "%d%s%s\r\n", r.Code, sep, l)
		} else {
			fmt.Fprintf(c.bw, "%d%s%d.%d.%d %s\r\n", r.Code, sep, r.EnhancedCode[0], r.EnhancedCode[1], r.EnhancedCode[2], l)
		}
	}
	if c.br.Buffered() == 0 {
		c.flush()
	}
}

func (c *conn) flush() {
	c.nc.SetWriteDeadline(time.Now().Add(max(c.set.cfg.IdleTimeout.D(), time.Second)))
	c.bw.Flush()
}

// replyAndClose sends a last reply and ends the connection.
func (c *conn) replyAndClose(r *smtp.SMTPError) {
	c.writeReply(r)
	c.flush()
}

func (c *conn) close() {
	c.endTransaction()
	c.cancel()
	c.nc.Close()
}

// hello answers HELO and EHLO (RFC 5321 §4.1.1.1); it resets any
// transaction.
func (c *conn) hello(verb, name string) error {
	if name == "" || strings.ContainsAny(name, " \t") {
		return reply(501, 5, 5, 4, "Syntax: "+verb+" hostname")
	}
	c.endTransaction()
	c.helo = name
	if verb == "HELO" {
		return reply(250, 2, 0, 0, c.srv.opts.Hostname)
	}
	caps := []string{c.srv.opts.Hostname + " Hello " + sanitizeTrace(name), "PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES",
		"CHUNKING", "SMTPUTF8"}
	if m := c.set.cfg.MaxMessageBytes; m > 0 {
		caps = append(caps, "SIZE "+strconv.FormatInt(m, 10))
	} else {
		caps = append(caps, "SIZE")
	}
	if c.tls == nil && c.srv.opts.TLSConfig != nil {
		caps = append(caps, "STARTTLS")
	}
	if c.tls != nil {
		if len(c.set.cfg.Auth.Users) > 0 && c.authUser == "" {
			caps = append(caps, "AUTH PLAIN LOGIN")
		}
		caps = append(caps, "REQUIRETLS")
	}
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.NoEnhancedCode, Message: strings.Join(caps, "\n")}
}

// startTLS upgrades the connection (RFC 3207). Anything the client sent
// after STARTTLS in the same flight is an injection attempt (it would be
// read as if it came over TLS): the connection is closed.
func (c *conn) startTLS(arg string) error {
	switch {
	case arg != "":
		return reply(501, 5, 5, 4, "Syntax: STARTTLS")
	case c.tls != nil:
		return reply(503, 5, 5, 1, "Already running in TLS")
	case c.srv.opts.TLSConfig == nil:
		return reply(502, 5, 5, 1, "TLS not supported")
	case c.br.Buffered() > 0:
		return &replyErr{reply(554, 5, 5, 0, "Protocol error: commands pipelined after STARTTLS"), errPipelinedTLS}
	}
	c.writeReply(reply(220, 2, 0, 0, "Ready to start TLS"))
	c.flush()
	tc := tls.Server(c.nc, c.srv.opts.TLSConfig)
	tc.SetDeadline(time.Now().Add(max(c.set.cfg.IdleTimeout.D(), time.Second)))
	if err := c.handshake(tc, "starttls"); err != nil {
		return err // nothing more can be said in the clear
	}
	tc.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	// RFC 3207 §4.2: forget everything learnt before TLS.
	c.endTransaction()
	c.nc, c.tls, c.helo, c.authUser = tc, &st, "", ""
	c.dc = &deadlineConn{Conn: tc, idle: c.set.cfg.IdleTimeout.D(), cap: c.sessionCap()}
	c.br.Reset(c.dc)
	c.bw.Reset(tc)
	return nil
}

// auth runs an AUTH exchange (RFC 4954), only over TLS.
func (c *conn) auth(arg string) error {
	mech, initial, hasInitial := strings.Cut(arg, " ")
	mech = strings.ToUpper(mech)
	switch {
	case c.tls == nil:
		return reply(523, 5, 7, 10, "TLS is required for AUTH")
	case len(c.set.cfg.Auth.Users) == 0:
		return reply(502, 5, 5, 1, "AUTH not available")
	case c.authUser != "":
		return reply(503, 5, 5, 1, "Already authenticated")
	case c.tx != nil:
		return reply(503, 5, 5, 1, "AUTH not allowed during a mail transaction")
	}
	srv, err := c.saslServer(mech)
	if err != nil {
		return err
	}
	var response []byte
	if hasInitial {
		if initial == "=" {
			response = []byte{}
		} else if response, err = base64.StdEncoding.DecodeString(initial); err != nil {
			return reply(501, 5, 5, 2, "Invalid base64 data")
		}
	}
	for {
		challenge, done, err := srv.Next(response)
		if err != nil {
			var se *smtp.SMTPError
			if errors.As(err, &se) {
				if se.Code == 421 {
					return &replyErr{se, err}
				}
				return se
			}
			return toSMTPError(errAuthFailed, "")
		}
		if done {
			return reply(235, 2, 0, 0, "Authentication succeeded")
		}
		c.writeReply(&smtp.SMTPError{Code: 334, EnhancedCode: smtp.NoEnhancedCode, Message: base64.StdEncoding.EncodeToString(challenge)})
		c.flush()
		line, err := readCommand(c.br, c.set.cfg.MaxLineLength)
		if err != nil {
			return &replyErr{reply(500, 5, 5, 2, "Bad AUTH response, closing connection"), err}
		}
		if line == "*" {
			return reply(501, 5, 0, 0, "AUTH cancelled")
		}
		if response, err = base64.StdEncoding.DecodeString(line); err != nil {
			return reply(501, 5, 5, 2, "Invalid base64 data")
		}
	}
}

func (c *conn) saslServer(mech string) (sasl.Server, error) {
	switch mech {
	case "PLAIN":
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && identity != username {
				return toSMTPError(errAuthFailed, "")
			}
			return c.checkCredentials(username, password)
		}), nil
	case "LOGIN":
		return &loginServer{check: c.checkCredentials}, nil
	}
	return nil, reply(504, 5, 5, 4, "Unsupported authentication mechanism")
}
