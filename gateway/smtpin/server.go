package smtpin

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

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

// Options are what the inbound server works with.
type Options struct {
	Config    config.Inbound
	Hostname  string
	TLSConfig *tls.Config
	Spool     Spooler
	Logger    *slog.Logger
	OnQueued  func(id string) // called after each commit: the scheduler's wake-up
	// OnAccepted, when set, hears of each spooled message (metrics).
	OnAccepted func(env queue.Envelope)
	Now        func() time.Time
	// Policy returns the rule set in force (it can be reloaded); nil or
	// a nil engine means every recipient gets the default chain.
	Policy func() *policy.Engine
	// SpoolDir is where the spool lives: MAIL is refused (452 4.3.1)
	// while its file system has less than Config.MinFreeDiskBytes free.
	// "" skips the check.
	SpoolDir string
	// ClientRoots verify the certificate a client presents for a tenant's
	// client_cert_name; nil means the system roots.
	ClientRoots *x509.CertPool
	// loopbackIsRemote makes loopback clients subject to require_tls, so
	// tests on 127.0.0.1 can exercise the rule for remote clients.
	loopbackIsRemote bool
}

// Server is the SMTP side facing the tenant. One Server serves the
// STARTTLS listener and, if configured, the implicit-TLS one.
type Server struct {
	opts         Options
	set          atomic.Pointer[settings]
	limits       *connLimiter
	budget       *byteBudget
	authFailures *authLimiter

	mu       sync.Mutex
	draining bool
	conns    map[*conn]struct{}
	active   sync.WaitGroup // transactions between MAIL and their end
	serving  sync.WaitGroup // connection goroutines
}

// New returns a server; Serve and ServeImplicitTLS run it.
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
	set := newSettings(cfg)
	if policy.AnyClientCert(set.tenants) && opts.TLSConfig != nil {
		// Ask every client for a certificate, require none: the tenant
		// check verifies it, and only for clients in a tenant's networks.
		opts.TLSConfig = opts.TLSConfig.Clone()
		opts.TLSConfig.ClientAuth = tls.RequestClientCert
	}
	if opts.TLSConfig != nil {
		opts.TLSConfig = recordOffers(opts.TLSConfig)
	}
	s := &Server{
		opts:         opts,
		budget:       &byteBudget{max: cfg.MaxBytesInFlight},
		authFailures: newAuthLimiter(),
		conns:        map[*conn]struct{}{},
	}
	s.set.Store(set)
	s.limits = newConnLimiter(cfg.MaxConnections, cfg.MaxConnectionsPerIP, s.isTrusted)
	return s, nil
}

// settings are the inbound settings a reload may change: limits,
// timeouts, trusted networks, tenants, users. A connection keeps the
// settings it started under; the next one gets the new.
type settings struct {
	cfg       config.Inbound
	trusted   []netip.Prefix
	tenants   []policy.Tenant
	decoyOnce sync.Once
	decoy     string
}

func newSettings(cfg config.Inbound) *settings {
	if cfg.MaxLineLength <= 0 {
		cfg.MaxLineLength = 2000
	}
	return &settings{cfg: cfg, trusted: cfg.Networks(), tenants: policy.Tenants(cfg)}
}

// Reconfigure puts cfg's limits, timeouts, trusted networks, tenants and
// users in force for the connections that come next (SIGHUP), and names
// the settings it cannot change while running: they keep their value
// until a restart.
func (s *Server) Reconfigure(cfg config.Inbound) (needRestart []string) {
	old := s.set.Load().cfg
	set := newSettings(cfg)
	if old.Listen != cfg.Listen {
		needRestart = append(needRestart, "inbound.listen")
	}
	if old.ImplicitTLSListen != cfg.ImplicitTLSListen {
		needRestart = append(needRestart, "inbound.implicit_tls_listen")
	}
	if old.TLS != cfg.TLS {
		needRestart = append(needRestart, "inbound.tls (the files named; a new certificate in the same files is reloaded)")
	}
	if old.MaxBytesInFlight != cfg.MaxBytesInFlight {
		needRestart = append(needRestart, "inbound.max_bytes_in_flight")
		set.cfg.MaxBytesInFlight = old.MaxBytesInFlight
	}
	if policy.AnyClientCert(set.tenants) && s.opts.TLSConfig != nil && s.opts.TLSConfig.ClientAuth == tls.NoClientCert {
		// The listener does not ask for client certificates yet: a
		// tenant's client_cert_name cannot be met until a restart, so
		// such a tenant refuses relay until then (fail closed).
		needRestart = append(needRestart, "inbound.tenants client_cert_name (the listener must ask for client certificates)")
	}
	s.set.Store(set)
	s.limits.setLimits(cfg.MaxConnections, cfg.MaxConnectionsPerIP)
	return needRestart
}

func (s *Server) isTrusted(ip netip.Addr) bool {
	return policy.MayRelay(ip, "", s.set.Load().trusted).Allowed
}

// Serve accepts SMTP connections with STARTTLS on l until Shutdown.
func (s *Server) Serve(l net.Listener) error { return s.serve(s.limits.wrap(l, true), false) }

// ServeImplicitTLS accepts connections that start with TLS (port 465
// style, RFC 8314) on l until Shutdown.
func (s *Server) ServeImplicitTLS(l net.Listener) error {
	if s.opts.TLSConfig == nil {
		return errors.New("inbound: implicit TLS without a certificate")
	}
	return s.serve(s.limits.wrap(l, false), true)
}

func (s *Server) serve(l net.Listener, implicitTLS bool) error {
	for {
		nc, err := l.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		c := s.newConn(nc, implicitTLS)
		s.mu.Lock()
		if s.draining {
			s.mu.Unlock()
			nc.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.serving.Add(1)
		s.mu.Unlock()
		go func() {
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				s.serving.Done()
			}()
			defer func() {
				// A bug in one session must not take the node down.
				if r := recover(); r != nil {
					s.opts.Logger.Error("SMTP session panicked; connection closed", "client", c.clientIP.String(), "panic", fmt.Sprint(r))
				}
			}()
			c.serve()
		}()
	}
}

func (s *Server) newConn(nc net.Conn, implicitTLS bool) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{srv: s, set: s.set.Load(), ctx: ctx, cancel: cancel, started: s.opts.Now()}
	if ap, err := netip.ParseAddrPort(nc.RemoteAddr().String()); err == nil {
		c.clientIP = ap.Addr().Unmap()
	}
	c.trusted = policy.MayRelay(c.clientIP, "", c.set.trusted).Allowed
	c.tenants = policy.TenantsFor(c.clientIP, c.set.tenants)
	c.raw = nc
	if implicitTLS {
		nc = tls.Server(nc, s.opts.TLSConfig)
	}
	c.nc = nc
	c.dc = &deadlineConn{Conn: nc, idle: c.set.cfg.IdleTimeout.D()}
	c.dc.cap = c.sessionCap()
	c.br = bufio.NewReaderSize(c.dc, 64<<10)
	c.bw = bufio.NewWriterSize(nc, 4<<10)
	return c
}

// Shutdown stops accepting connections, refuses new transactions, waits
// for transactions in flight until ctx ends, then closes every session.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
	s.limits.closeListeners()
	done := make(chan struct{})
	go func() {
		s.active.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
	// Idle sessions and any still in a transaction past the deadline are
	// closed under their readers.
	s.mu.Lock()
	n := len(s.conns)
	for c := range s.conns {
		// The socket, not the TLS layer over it: a TLS close waits to
		// send its close_notify to a client that may not read.
		c.raw.Close()
	}
	s.mu.Unlock()
	stopped := make(chan struct{})
	go func() {
		s.serving.Wait()
		close(stopped)
	}()
	select {
	case <-stopped:
		return nil
	case <-time.After(2 * time.Second):
		return fmt.Errorf("%d SMTP sessions did not stop", n)
	}
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

// roomFor says why a transaction of size octets (0: unknown) cannot be
// taken now: the node's byte budget or the spool's disk.
func (s *Server) roomFor(size int64) error {
	if free := s.budget.free(); free >= 0 && size > free {
		return fmt.Errorf("message of %d octets, %d left of the budget for messages in flight", size, free)
	}
	minFree := s.set.Load().cfg.MinFreeDiskBytes
	if s.opts.SpoolDir == "" || minFree <= 0 {
		return nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(s.opts.SpoolDir, &st); err != nil {
		return nil // the commit will say what is wrong with the disk
	}
	if avail := int64(st.Bavail) * int64(st.Bsize); avail < minFree+size {
		return fmt.Errorf("%d octets free on the spool's disk, %d must stay free", avail, minFree)
	}
	return nil
}

// byteBudget bounds the octets of message content the node holds in
// memory across all sessions (inbound.max_bytes_in_flight): a session
// that cannot get room is answered 452 4.3.1 and the client retries.
type byteBudget struct {
	mu   sync.Mutex
	max  int64 // 0: unbounded
	used int64
}

func (b *byteBudget) take(n int) bool {
	if b.max <= 0 || n <= 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+int64(n) > b.max {
		return false
	}
	b.used += int64(n)
	return true
}

func (b *byteBudget) give(n int) {
	if b.max <= 0 || n <= 0 {
		return
	}
	b.mu.Lock()
	b.used -= int64(n)
	b.mu.Unlock()
}

// free is what is left, -1 when unbounded.
func (b *byteBudget) free() int64 {
	if b.max <= 0 {
		return -1
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.max - b.used
}

// Users are the AUTH users in force (they change on reload): the admin
// API's OAuth password grant checks the same ones.
func (s *Server) Users() []config.User { return s.set.Load().cfg.Auth.Users }
