package smtpin

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/internal/mailtext"
	"github.com/sealgate/sealgate/policy"
	"github.com/sealgate/sealgate/queue"
)

// maxAuthFailures is how many failed AUTH attempts a session gets before
// it is closed: enough for a typo, not for guessing.
const maxAuthFailures = 3

// session is one SMTP connection from the tenant. go-smtp calls
// its methods in protocol order; Logout ends it.
type session struct {
	srv      *Server
	conn     *smtp.Conn
	ctx      context.Context
	cancel   context.CancelFunc
	timer    *time.Timer
	clientIP netip.Addr
	authUser string
	authFail int

	// the transaction in progress. go-smtp may call Reset and Logout from
	// another goroutine while Data runs (on Close, and around BDAT), so
	// mu guards these, and Data works on a copy taken when it starts.
	mu         sync.Mutex
	inTx       bool
	from       string
	rcpts      []string
	utf8       bool
	requireTLS bool
}

// Reset implements smtp.Session: the transaction is abandoned.
func (s *session) Reset() { s.endTransaction() }

// Logout implements smtp.Session.
func (s *session) Logout() error {
	s.endTransaction()
	if s.timer != nil {
		s.timer.Stop()
	}
	s.cancel()
	return nil
}

func (s *session) endTransaction() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inTx {
		s.srv.active.Done()
	}
	s.inTx, s.from, s.rcpts, s.utf8, s.requireTLS = false, "", nil, false, false
}

func (s *session) tlsState() (tls.ConnectionState, bool) {
	return s.conn.TLSConnectionState()
}

// Mail implements smtp.Session.
func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	s.endTransaction()
	if _, isTLS := s.tlsState(); !isTLS && s.srv.opts.Config.RequireTLS &&
		(!s.clientIP.IsLoopback() || s.srv.opts.loopbackIsRemote) {
		return toSMTPError(errMustStartTLS, "")
	}
	if _, isTLS := s.tlsState(); opts != nil && opts.RequireTLS && !isTLS {
		// RFC 8689 §4.1: REQUIRETLS only on a session protected by TLS.
		return toSMTPError(errRequireTLSPlaintext, "")
	}
	utf8 := opts != nil && opts.UTF8
	if !utf8 && !mailtext.IsASCII(from) {
		return toSMTPError(errNeedSMTPUTF8, "")
	}
	if !s.srv.beginTransaction() {
		return toSMTPError(errShuttingDown, "")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inTx, s.from, s.utf8 = true, from, utf8
	s.requireTLS = opts != nil && opts.RequireTLS
	return nil
}

// Rcpt implements smtp.Session. Relay authorisation happens here, per
// RFC 5321 §3.6.1.
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if d := policy.MayRelay(s.clientIP, s.authUser, s.srv.trusted); !d.Allowed {
		s.srv.opts.Logger.Warn("relay denied", "client", s.clientIP.String(), "helo", s.conn.Hostname(), "rcpt", to, "reason", d.Reason)
		return toSMTPError(errRelayDenied, "")
	}
	at := strings.LastIndexByte(to, '@')
	if at <= 0 || at == len(to)-1 {
		return toSMTPError(errNoDomain, "")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.utf8 && !mailtext.IsASCII(to) {
		return toSMTPError(errNeedSMTPUTF8, "")
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

// Data implements smtp.Session: it reads the whole message (bounded by
// the size limit), refuses smuggling and loops, adds the Received header
// and commits the message to the spool before answering 250.
func (s *session) Data(r io.Reader) error {
	start := s.srv.opts.Now()
	s.mu.Lock()
	from, rcpts, requireTLS := s.from, append([]string(nil), s.rcpts...), s.requireTLS
	s.mu.Unlock()
	log := s.srv.opts.Logger.With("client", s.clientIP.String(), "helo", s.conn.Hostname(), "from", from,
		"rcpts", len(rcpts), "auth", s.authUser)
	// Everything the Received header says is known before the first
	// byte of DATA, so it goes first into the one buffer the message is
	// read into: in the common case the body is never copied again.
	facts := receivedFacts{Helo: s.conn.Hostname(), ClientIP: s.clientIP.String(), Hostname: s.srv.opts.Hostname,
		AuthUser: s.authUser, Recipients: rcpts, Time: start}
	tlsDesc := ""
	if st, ok := s.tlsState(); ok {
		facts.TLSVersion, facts.Cipher = certs.TLSVersionName(st.Version), tls.CipherSuiteName(st.CipherSuite)
		tlsDesc = facts.TLSVersion + " " + facts.Cipher
	}
	var buf bytes.Buffer
	buf.Write(receivedHeader(facts))
	traceLen := buf.Len()
	if _, err := buf.ReadFrom(r); err != nil {
		// Over the size limit (552 from go-smtp) or the client went away.
		log.Info("message refused", "err", err.Error())
		return toSMTPError(err, "")
	}
	msg, body := buf.Bytes(), buf.Bytes()[traceLen:]
	if mailtext.HasBareLineEnding(body) {
		if s.srv.opts.Config.BareLineEndings != "normalize" {
			log.Warn("message refused: bare CR or LF (SMTP smuggling defence)", "size", len(body))
			return toSMTPError(errBareLineEnding, "")
		}
		body = mailtext.NormalizeLineEndings(body)
		msg = append(append(make([]byte, 0, traceLen+len(body)), msg[:traceLen]...), body...)
	}
	if countHops(body) > maxHops {
		log.Warn("message refused: too many hops", "size", len(body))
		return toSMTPError(errTooManyHops, "")
	}

	var decisions []queue.RcptDecision
	hold, chains := "", ""
	if s.srv.opts.Policy != nil {
		if engine := s.srv.opts.Policy(); engine != nil {
			trusted := s.authUser != "" || policy.MayRelay(s.clientIP, "", s.srv.trusted).Allowed
			res, out := policy.Apply(engine, policy.Session{From: from, Recipients: rcpts, AuthUser: s.authUser,
				ClientIP: s.clientIP, Trusted: trusted}, body)
			if res.Reject != "" {
				log.Info("message rejected by policy", "rule", res.RejectRule)
				return toSMTPError(&replyError{Code: 550, Enhanced: smtp.EnhancedCode{5, 7, 1}, Public: mailtext.OneLine(res.Reject)}, "")
			}
			if !mailtext.SameBytes(out, body) { // the policy rewrote the header
				msg = append(append(make([]byte, 0, traceLen+len(out)), msg[:traceLen]...), out...)
			}
			hold = res.Hold
			for _, rd := range res.Recipients {
				decisions = append(decisions, queue.RcptDecision{Chain: rd.Chain.Strings(), Rules: rd.Rules, Reasons: rd.Reasons})
				chains += " " + rd.Chain.String()
			}
		}
	}

	env := queue.Envelope{
		From:       from,
		Recipients: rcpts,
		ClientAddr: s.conn.Conn().RemoteAddr().String(),
		ClientHelo: s.conn.Hostname(),
		AuthUser:   s.authUser,
		TLS:        tlsDesc,
		RequireTLS: requireTLS,
		Decisions:  decisions,
		Hold:       hold,
	}
	id, err := s.srv.opts.Spool.Enqueue(s.ctx, env, msg)
	if err != nil {
		log.Error("message not spooled", "err", err, "size", len(msg))
		return toSMTPError(err, "")
	}
	log.Info("message queued", "queue_id", id, "size", len(msg), "tls", tlsDesc, "chains", strings.TrimSpace(chains), "hold", hold,
		"took", s.srv.opts.Now().Sub(start).Round(time.Microsecond).String())
	s.srv.opts.OnQueued(id)
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as " + id}
}

// AuthMechanisms implements smtp.AuthSession. go-smtp offers them only
// once the connection is under TLS (AllowInsecureAuth is off), and only
// when users are configured.
func (s *session) AuthMechanisms() []string {
	if len(s.srv.opts.Config.Auth.Users) == 0 {
		return nil
	}
	return []string{"PLAIN", "LOGIN"}
}

// Auth implements smtp.AuthSession.
func (s *session) Auth(mech string) (sasl.Server, error) {
	if _, isTLS := s.tlsState(); !isTLS || len(s.srv.opts.Config.Auth.Users) == 0 {
		return nil, smtp.ErrAuthUnsupported
	}
	check := func(username, password string) error {
		if s.checkUser(username, password) {
			s.authUser = username
			s.srv.opts.Logger.Info("authenticated", "client", s.clientIP.String(), "user", username)
			return nil
		}
		s.authFail++
		s.srv.opts.Logger.Warn("authentication failed", "client", s.clientIP.String(), "user", username, "failures", s.authFail)
		if s.authFail >= maxAuthFailures {
			// Answer, then hang up: the reply must reach the client first.
			time.AfterFunc(100*time.Millisecond, func() { s.conn.Conn().Close() })
			return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many authentication failures"}
		}
		return toSMTPError(errAuthFailed, "")
	}
	switch mech {
	case "PLAIN":
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && identity != username {
				return toSMTPError(errAuthFailed, "")
			}
			return check(username, password)
		}), nil
	case "LOGIN":
		return &loginServer{check: check}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (s *session) checkUser(username, password string) bool {
	for _, u := range s.srv.opts.Config.Auth.Users {
		if u.Username == username {
			return config.CheckPassword(u.PasswordHash, password)
		}
	}
	// Spend the same time on an unknown user as on a wrong password, so
	// that timing does not tell which users exist.
	if users := s.srv.opts.Config.Auth.Users; len(users) > 0 {
		config.CheckPassword(users[0].PasswordHash, password)
	}
	return false
}

// loginServer is the server side of the LOGIN mechanism (an obsolete
// but widespread SASL mechanism; Outlook and many devices use it).
type loginServer struct {
	check    func(username, password string) error
	username string
	step     int
}

func (l *loginServer) Next(response []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		l.step = 1
		if len(response) == 0 {
			return []byte("Username:"), false, nil
		}
		fallthrough // initial response carried the username
	case 1:
		l.username = string(response)
		l.step = 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		if err := l.check(l.username, string(response)); err != nil {
			return nil, true, err
		}
		return nil, true, nil
	}
	return nil, true, errors.New("unexpected LOGIN response")
}
