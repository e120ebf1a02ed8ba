package testutil

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// SinkOptions configures an SMTPSink.
type SinkOptions struct {
	// ListenAddr is where to listen; "" means 127.0.0.1:0.
	ListenAddr string
	// Hostname is the greeting name and, with TLS, the certificate's name.
	Hostname string
	// TLS offers STARTTLS with a certificate for Hostname issued by CA
	// (a fresh CA when nil, i.e. one the gateway does not trust).
	TLS bool
	CA  *CA
	// RcptReply, when set, decides each RCPT: nil accepts.
	RcptReply func(rcpt string) *smtp.SMTPError
	// DataReply, when set, decides the reply to DATA: nil accepts.
	DataReply func() *smtp.SMTPError
	// AuthUser and AuthPassword, when set, offer AUTH PLAIN (after TLS).
	AuthUser, AuthPassword string
	// REQUIRETLS advertises RFC 8689's REQUIRETLS (after TLS).
	REQUIRETLS bool
	// BrokenTLS offers STARTTLS but only TLS 1.0, which no client of ours
	// accepts: the handshake fails, as with an old server.
	BrokenTLS bool
}

// SinkMessage is one message as the sink received it.
type SinkMessage struct {
	From string
	To   []string
	Data []byte // exactly the bytes after DATA, CRLF line endings
	Helo string
	TLS  string // "TLS1.3 TLS_AES_128_GCM_SHA256"; "" for plaintext
	// AuthUser is who authenticated, "" if nobody.
	AuthUser string
	// RequireTLS: the client sent MAIL FROM … REQUIRETLS.
	RequireTLS bool
	// QueueID is the sink's own ID for the message and Reply the reply
	// to its final dot (or BDAT LAST) as sent on the wire:
	// "250 2.0.0 Ok: queued as 1F2A0003", the way Postfix names it.
	QueueID string
	Reply   string
}

// SMTPSink is an in-process destination MX that records what it gets.
type SMTPSink struct {
	t       testing.TB
	opts    SinkOptions
	srv     *smtp.Server
	ln      net.Listener
	mu      sync.Mutex
	msgs    []SinkMessage
	failN   int
	failErr *smtp.SMTPError
	queued  int // messages taken, for their queue IDs
	conns   atomic.Int64
	open    *connSet
	leaf    *x509.Certificate
}

// NewSMTPSink starts a sink; it stops when the test ends.
func NewSMTPSink(t testing.TB, opts SinkOptions) *SMTPSink {
	t.Helper()
	if opts.ListenAddr == "" {
		opts.ListenAddr = "127.0.0.1:0"
	}
	if opts.Hostname == "" {
		opts.Hostname = "sink.test"
	}
	ln, err := net.Listen("tcp", opts.ListenAddr)
	if err != nil {
		t.Fatal(err)
	}
	s := &SMTPSink{t: t, opts: opts, ln: ln, open: &connSet{}}
	s.srv = smtp.NewServer(smtp.BackendFunc(s.newSession))
	s.srv.Domain = opts.Hostname
	s.srv.EnableSMTPUTF8 = true
	s.srv.EnableREQUIRETLS = opts.REQUIRETLS
	s.srv.ReadTimeout = 10 * time.Second
	s.srv.WriteTimeout = 10 * time.Second
	s.srv.ErrorLog = quietLog{}
	if opts.TLS {
		ca := opts.CA
		if ca == nil {
			ca = NewCA(t)
		}
		cert := ca.Issue(t, opts.Hostname)
		s.leaf, _ = x509.ParseCertificate(cert.Certificate[0])
		s.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if opts.BrokenTLS {
			s.srv.TLSConfig.MinVersion, s.srv.TLSConfig.MaxVersion = tls.VersionTLS10, tls.VersionTLS10
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.srv.Serve(countingListener{Listener: ln, n: &s.conns, open: s.open})
	}()
	t.Cleanup(func() {
		// Cut the sockets under the sessions, then wait for them to end:
		// go-smtp's own Close swaps a connection it may be upgrading
		// with STARTTLS at that moment, a race inside the library.
		s.open.closeAll()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := s.srv.Shutdown(ctx); err != nil {
			s.srv.Close()
		}
		<-done
	})
	return s
}

// Addr is the sink's host:port.
func (s *SMTPSink) Addr() string { return s.ln.Addr().String() }

// Port is the sink's TCP port.
func (s *SMTPSink) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// Certificate is the sink's TLS certificate (nil without TLS).
func (s *SMTPSink) Certificate() *x509.Certificate { return s.leaf }

// Connections is how many connections the sink has accepted.
func (s *SMTPSink) Connections() int { return int(s.conns.Load()) }

// FailRcptTimes makes the next n RCPT commands fail with err.
func (s *SMTPSink) FailRcptTimes(n int, err *smtp.SMTPError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failN, s.failErr = n, err
}

// Messages returns a copy of what the sink has received so far.
func (s *SMTPSink) Messages() []SinkMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SinkMessage(nil), s.msgs...)
}

// WaitMessages waits until the sink holds at least n messages and
// returns them; it fails the test after timeout.
func (s *SMTPSink) WaitMessages(t testing.TB, n int, timeout time.Duration) []SinkMessage {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if msgs := s.Messages(); len(msgs) >= n {
			return msgs
		}
		if time.Now().After(deadline) {
			t.Fatalf("sink %s got %d messages, want %d", s.Addr(), len(s.Messages()), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *SMTPSink) newSession(c *smtp.Conn) (smtp.Session, error) {
	return &sinkSession{sink: s, conn: c}, nil
}

type sinkSession struct {
	sink *SMTPSink
	conn *smtp.Conn
	from string
	to   []string
	user string
	rtls bool
}

func (ss *sinkSession) AuthMechanisms() []string {
	if ss.sink.opts.AuthUser == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (ss *sinkSession) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain || ss.sink.opts.AuthUser == "" {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != ss.sink.opts.AuthUser || pass != ss.sink.opts.AuthPassword {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "bad credentials"}
		}
		ss.user = user
		return nil
	}), nil
}

func (ss *sinkSession) Reset()        { ss.from, ss.to = "", nil }
func (ss *sinkSession) Logout() error { return nil }

func (ss *sinkSession) Mail(from string, opts *smtp.MailOptions) error {
	ss.from, ss.to = from, nil
	ss.rtls = opts != nil && opts.RequireTLS
	return nil
}

func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s := ss.sink
	s.mu.Lock()
	if s.failN > 0 {
		s.failN--
		err := s.failErr
		s.mu.Unlock()
		return err
	}
	s.mu.Unlock()
	if s.opts.RcptReply != nil {
		if err := s.opts.RcptReply(to); err != nil {
			return err
		}
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if ss.sink.opts.DataReply != nil {
		if err := ss.sink.opts.DataReply(); err != nil {
			return err
		}
	}
	msg := SinkMessage{From: ss.from, To: append([]string(nil), ss.to...), Data: data, Helo: ss.conn.Hostname(), AuthUser: ss.user, RequireTLS: ss.rtls}
	if st, ok := ss.conn.TLSConnectionState(); ok {
		msg.TLS = tls.VersionName(st.Version) + " " + tls.CipherSuiteName(st.CipherSuite)
	}
	ss.sink.mu.Lock()
	ss.sink.queued++
	msg.QueueID = fmt.Sprintf("%04X%04X", ss.sink.Port()&0xffff, ss.sink.queued&0xffff)
	ss.sink.mu.Unlock()
	// go-smtp writes a returned *SMTPError as the reply whatever its
	// code: a 250 with our own text, as a real MTA names its queue ID.
	accepted := &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as " + msg.QueueID}
	msg.Reply = fmt.Sprintf("%d %d.%d.%d %s", accepted.Code, accepted.EnhancedCode[0], accepted.EnhancedCode[1], accepted.EnhancedCode[2], accepted.Message)
	ss.sink.mu.Lock()
	ss.sink.msgs = append(ss.sink.msgs, msg)
	ss.sink.mu.Unlock()
	return accepted
}

type countingListener struct {
	net.Listener
	n    *atomic.Int64
	open *connSet
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
		l.open.add(c)
	}
	return c, err
}

// connSet holds the sink's accepted sockets, to cut them at the end.
type connSet struct {
	mu    sync.Mutex
	conns []net.Conn
}

func (s *connSet) add(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns = append(s.conns, c)
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
}

type quietLog struct{}

func (quietLog) Printf(string, ...any) {}
func (quietLog) Println(...any)        {}

// NewMX makes host the mail exchanger of domain at preference pref in
// dns, with the address ip, and starts a sink there on port: a
// destination for delivery tests (every sink of a test shares one port,
// as port 25 is shared in real life).
func NewMX(t testing.TB, dns *DNSServer, domain, host, ip string, pref uint16, port int, opts SinkOptions) *SMTPSink {
	t.Helper()
	dns.AddMX(domain, host, pref)
	dns.AddA(host, ip)
	opts.ListenAddr = fmt.Sprintf("%s:%d", ip, port)
	opts.Hostname = host
	return NewSMTPSink(t, opts)
}
