package smtpin

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/policy"
	"github.com/sealgate/sealgate/queue"
)

// Spooler is what the inbound session needs from the spool:
// Enqueue returns only once the message is durable, and its ID goes into
// the 250 reply. queue.Store implements it.
type Spooler interface {
	Enqueue(ctx context.Context, env queue.Envelope, body []byte) (string, error)
}

type Options struct {
	Config    config.Inbound
	Hostname  string
	TLSConfig *tls.Config
	Spool     Spooler
	Logger    *slog.Logger
	OnQueued  func(id string) // called after each commit: the scheduler's wake-up
	Now       func() time.Time
	// Policy returns the rule set in force (it can be reloaded); nil or
	// a nil engine means every recipient gets the default chain.
	Policy func() *policy.Engine
	// loopbackIsRemote makes loopback clients subject to require_tls, so
	// tests on 127.0.0.1 can exercise the rule for remote clients.
	loopbackIsRemote bool
}

// Server is the SMTP side facing the tenant (RFC 5321, RFC 3207
// STARTTLS, RFC 4954 AUTH after TLS only, RFC 6531 SMTPUTF8, RFC 1870
// SIZE, RFC 3030 CHUNKING, RFC 8689 REQUIRETLS). One go-smtp server
// serves the STARTTLS listener and, if configured, the implicit-TLS one.
type Server struct {
	opts    Options
	srv     *smtp.Server
	trusted []netip.Prefix
	limits  *connLimiter

	mu       sync.Mutex
	draining bool
	active   sync.WaitGroup // transactions between MAIL and the DATA reply
}

func New(opts Options) (*Server, error) {
	if opts.Spool == nil {
		return nil, errors.New("inbound: no spool")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.OnQueued == nil {
		opts.OnQueued = func(string) {}
	}
	cfg := opts.Config
	s := &Server{
		opts:    opts,
		trusted: cfg.Networks(),
		limits:  newConnLimiter(cfg.MaxConnections, cfg.MaxConnectionsPerIP),
	}
	srv := smtp.NewServer(s)
	srv.Domain = opts.Hostname
	srv.TLSConfig = opts.TLSConfig
	srv.MaxMessageBytes = cfg.MaxMessageBytes
	srv.MaxRecipients = cfg.MaxRecipients
	srv.MaxLineLength = cfg.MaxLineLength
	srv.ReadTimeout = cfg.IdleTimeout.D()
	srv.WriteTimeout = cfg.IdleTimeout.D()
	srv.AllowInsecureAuth = false
	srv.EnableSMTPUTF8 = true
	srv.EnableREQUIRETLS = true
	srv.ErrorLog = slogPrinter{opts.Logger}
	s.srv = srv
	return s, nil
}

// Serve accepts SMTP connections with STARTTLS on l until Shutdown.
func (s *Server) Serve(l net.Listener) error {
	return s.srv.Serve(s.limits.wrap(l, true))
}

// ServeImplicitTLS accepts connections that start with TLS (port 465
// style, RFC 8314) on l until Shutdown.
func (s *Server) ServeImplicitTLS(l net.Listener) error {
	return s.srv.Serve(tls.NewListener(s.limits.wrap(l, false), s.opts.TLSConfig))
}

// Shutdown stops accepting connections, refuses new transactions, waits
// for transactions in flight until ctx ends, then closes every session.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.active.Wait()
		close(done)
	}()
	// Close the listeners now: no new connections while draining.
	s.limits.closeListeners()
	select {
	case <-done:
	case <-ctx.Done():
	}
	closed := make(chan error, 1)
	go func() { closed <- s.srv.Close() }()
	var err error
	select {
	case err = <-closed:
	case <-ctx.Done():
		// A session stuck inside the SMTP library must not hold the
		// stop forever: cut the sockets under it, then give it a moment.
		n := s.limits.forceClose()
		select {
		case err = <-closed:
		case <-time.After(2 * time.Second):
			return fmt.Errorf("%d SMTP sessions did not stop", n)
		}
	}
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// beginTransaction registers a transaction unless we are draining.
func (s *Server) beginTransaction() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return false
	}
	s.active.Add(1)
	return true
}

// NewSession implements smtp.Backend.
func (s *Server) NewSession(c *smtp.Conn) (smtp.Session, error) {
	ctx, cancel := context.WithCancel(context.Background())
	sess := &session{
		srv:    s,
		conn:   c,
		ctx:    ctx,
		cancel: cancel,
	}
	if ap, err := netip.ParseAddrPort(c.Conn().RemoteAddr().String()); err == nil {
		sess.clientIP = ap.Addr().Unmap()
	}
	if st := s.opts.Config.SessionTimeout.D(); st > 0 {
		// A session may not outlive its limit however busy it keeps us.
		sess.timer = time.AfterFunc(st, func() { c.Conn().Close() })
	}
	return sess, nil
}

// slogPrinter routes go-smtp's internal errors to our logger.
type slogPrinter struct{ l *slog.Logger }

func (p slogPrinter) Printf(format string, v ...any) {
	p.l.Debug("smtp server", "detail", fmt.Sprintf(format, v...))
}

func (p slogPrinter) Println(v ...any) { p.l.Debug("smtp server", "detail", fmt.Sprint(v...)) }
