package delivery

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/textproto"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/internal/dnsres"
	"github.com/sealgate/sealgate/internal/mailtext"
	"github.com/sealgate/sealgate/policy"
	"github.com/sealgate/sealgate/queue"
)

// Smarthost sends every message through one relay.
type Smarthost struct {
	Addr     string // host:port
	Username string
	Password string
	TLS      string // "starttls" (required), "implicit" or "none"
}

type Options struct {
	Hostname          string // EHLO name
	Resolver          *dnsres.Resolver
	Port              int // destination SMTP port
	RootCAs           *x509.CertPool
	ConnectTimeout    time.Duration
	CommandTimeout    time.Duration
	IdleConnTimeout   time.Duration
	MaxPerDestination int
	Smarthost         *Smarthost
	Logger            *slog.Logger
	Dial              func(ctx context.Context, network, addr string) (net.Conn, error)
	// AllowedPrivateNetworks are the non-public networks an MX host may
	// resolve to and still be dialled (outbound.allowed_private_networks);
	// none by default. The smarthost is not subject to them.
	AllowedPrivateNetworks []netip.Prefix
	// Self, when set, returns the node's inbound listener addresses: an
	// MX host or smarthost there is a mail loop and is never used.
	Self func() []net.Addr
}

// Request is one message for the recipients of one destination.
type Request struct {
	ID         string
	From       string
	Domain     string // all recipients are in it ("" via smarthost)
	Recipients []string
	Body       Body // the message as it leaves, CRLF line endings
	RequireTLS bool
	SMTPUTF8   bool
	// TLS is the transport requirement decided for this destination.
	TLS policy.TLSRequirement
	// Observe, when set, is told the outcome of every TLS session tried
	// (for TLSRPT, RFC 8460).
	Observe func(TLSSession)
}

// TLSSession is one TLS session outcome at one host.
type TLSSession struct {
	Host, IP string
	DANE     []dnsres.TLSARecord // the host's usable TLSA records, if DANE applied
	OK       bool
	Result   string // RFC 8460 result type when !OK
}

// Deliverer is the SMTP client side: it finds the destination's hosts,
// opens (or reuses) a connection, upgrades it with STARTTLS whenever
// offered, and runs one transaction for a group of recipients.
type Deliverer struct {
	opts  Options
	pool  *connPool
	slots *destinationSlots
	// Test hooks: never use CHUNKING; BDAT chunk size (0: bdatChunkSize).
	noChunking    bool
	bdatChunkSize int
}

func New(opts Options) *Deliverer {
	if opts.Dial == nil {
		d := &net.Dialer{Timeout: opts.ConnectTimeout}
		opts.Dial = d.DialContext
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Deliverer{
		opts:  opts,
		pool:  newConnPool(opts.IdleConnTimeout),
		slots: newDestinationSlots(max(opts.MaxPerDestination, 1)),
	}
}

// Close closes the idle pooled connections.
func (d *Deliverer) Close() { d.pool.closeAll() }

// outboundConn is an open, greeted connection to one destination host.
type outboundConn struct {
	sess     *session
	raw      net.Conn // the TCP connection under sess (and under TLS)
	host     string
	ip       string
	tls      *tls.ConnectionState
	verified bool
	certErr  string
	// certResult classifies a verification failure for TLS reports.
	certResult string
	// daneRequired: the host has usable TLSA records; dane is the record
	// the peer matched ("" if none), daneErr why it matched none.
	daneRequired  bool
	dane, daneErr string
	// tlsFallback: STARTTLS was offered, its handshake failed, and the
	// session went on in clear because opportunistic TLS allows it.
	tlsFallback string
}

func (d *Deliverer) Deliver(ctx context.Context, req Request) (queue.Attempt, []queue.RcptOutcome) {
	dest := req.Domain
	if d.opts.Smarthost != nil {
		dest = d.opts.Smarthost.Addr
	}
	att := queue.Attempt{Destination: dest, Recipients: req.Recipients,
		TLSLevel: req.TLS.Level.String(), TLSRequiredBy: req.TLS.RequiredBy}
	if req.TLS.Level == policy.TLSNone {
		d.opts.Logger.Warn("TLS disabled for this destination by tls_policy none", "queue_id", req.ID, "destination", dest)
	}
	if err := d.slots.acquire(ctx, dest); err != nil {
		return d.failAll(req, att, tempErr("4.4.5", "delivery cancelled: %v", err))
	}
	defer d.slots.release(dest)

	conn, err := d.connect(ctx, req)
	if err != nil {
		return d.failAll(req, att, err)
	}
	att.MXHost, att.IP = conn.host, conn.ip
	if conn.tls != nil {
		att.TLSVersion = certs.TLSVersionName(conn.tls.Version)
		att.Cipher = tls.CipherSuiteName(conn.tls.CipherSuite)
		att.CertVerified, att.CertError = conn.verified, conn.certErr
	}
	att.TLSFallback = conn.tlsFallback
	att.MTASTS = mtastsOutcome(req.TLS, conn)
	att.DANE = conn.dane
	// The session's reads and writes have deadlines, not a context: a
	// shutdown closes the socket under it, so a transaction stuck on a
	// slow server ends at once.
	stop := context.AfterFunc(ctx, func() { conn.raw.Close() })
	outcomes, reply, reusable := d.transaction(conn, req)
	if !stop() {
		outcomes, reply, reusable = cancelled(outcomes, req.Recipients, conn.host), "delivery cancelled", false
	}
	att.Reply = reply
	if reusable {
		d.pool.put(dest, conn)
	} else {
		conn.sess.close()
	}
	d.logAttempt(req, att, outcomes)
	return att, outcomes
}

// connect returns a pooled connection to the destination or dials its
// hosts in order until one greets us.
func (d *Deliverer) connect(ctx context.Context, req Request) (*outboundConn, error) {
	dest := req.Domain
	if d.opts.Smarthost != nil {
		dest = d.opts.Smarthost.Addr
	}
	for {
		c := d.pool.get(dest)
		if c == nil {
			break
		}
		c.sess.timeout = d.opts.CommandTimeout
		if meetsTLS(c, req.TLS.Level) == nil {
			stop := context.AfterFunc(ctx, func() { c.raw.Close() })
			err := c.sess.reset()
			if stop() && err == nil {
				return c, nil
			}
		}
		c.sess.close()
	}
	if sh := d.opts.Smarthost; sh != nil {
		host, port, err := net.SplitHostPort(sh.Addr)
		if err != nil {
			return nil, permErr("5.3.5", "bad smarthost address %q", sh.Addr)
		}
		// Credentials and the tenant's mail go to the smarthost only if it
		// proves who it is: TLS to it means a verified certificate.
		level := req.TLS.Level
		if sh.TLS != "none" && level < policy.TLSVerify {
			level = policy.TLSVerify
		}
		c, err := d.dialHost(ctx, host, net.JoinHostPort(host, port), sh, level, dnsres.TLSAState{})
		if err != nil {
			// Whatever the smarthost says before a transaction (a refused
			// AUTH, no STARTTLS) is a configuration problem to fix, not a
			// reason to bounce the tenant's mail: retry later.
			return nil, tempErr("4.4.1", "smarthost %s: %s", sh.Addr, mailtext.OneLine(replyText(err)))
		}
		return c, nil
	}

	hosts, err := d.opts.Resolver.MX(ctx, req.Domain)
	if err != nil {
		return nil, err
	}
	var errs, kinds []string
	tlsFailures, dialled, refused, loops := 0, 0, 0, 0
	for _, h := range hosts {
		dane, err := d.opts.Resolver.DANE(ctx, h.Name, h.Secure)
		if err != nil {
			errs = append(errs, h.Name+": "+err.Error())
			continue
		}
		if len(dane.Records) == 0 {
			// DANE takes precedence over MTA-STS (RFC 8461 §2); without
			// it, an enforced policy decides which hosts may be used.
			if req.TLS.DANEOnly {
				errs = append(errs, h.Name+": no usable DNSSEC-validated TLSA records")
				tlsFailures++
				if req.Observe != nil {
					req.Observe(TLSSession{Host: h.Name, Result: "dane-required"})
				}
				continue
			}
			if !req.TLS.MXAllowed(h.Name) {
				errs = append(errs, h.Name+": not an MX host of the MTA-STS policy")
				tlsFailures++
				if req.Observe != nil {
					req.Observe(TLSSession{Host: h.Name, Result: "validation-failure"})
				}
				continue
			}
		}
		for _, ip := range h.Addrs {
			if r := d.guardMX(ip, d.opts.Port); r != nil {
				errs = append(errs, fmt.Sprintf("%s[%s]: %s", h.Name, ip, r.reason))
				refused++
				if r.loop {
					loops++
				}
				continue
			}
			dialled++
			addr := netip.AddrPortFrom(ip, uint16(d.opts.Port)).String()
			c, err := d.dialHost(ctx, h.Name, addr, nil, req.TLS.Level, dane)
			var hs *handshakeError
			if err != nil && errors.As(err, &hs) && clearAllowed(req.TLS, dane) {
				// Opportunistic means opportunistic (as Postfix does): a
				// server whose TLS we cannot speak (a TLS 1.0-only one,
				// say) still gets the mail, in clear, and the record says
				// so. Never for a domain whose TLS history, MTA-STS
				// policy, DANE records or configuration require TLS: those
				// have a level above "may".
				if c, err = d.dialHost(ctx, h.Name, addr, nil, policy.TLSNone, dane); err == nil {
					c.tlsFallback = hs.Error()
					d.opts.Logger.Warn("TLS handshake failed; delivering in clear as opportunistic TLS allows",
						"queue_id", req.ID, "destination", req.Domain, "mx", h.Name, "ip", ip.String(), "err", hs.Error())
				}
			}
			if err == nil {
				if c.tls != nil && req.Observe != nil {
					req.Observe(TLSSession{Host: h.Name, IP: ip.String(), DANE: dane.Records, OK: true})
				}
				return c, nil
			}
			var te *tlsRequirementError
			if errors.As(err, &te) {
				tlsFailures++
				if req.Observe != nil {
					req.Observe(TLSSession{Host: h.Name, IP: ip.String(), DANE: dane.Records, Result: te.result})
				}
			}
			errs = append(errs, fmt.Sprintf("%s[%s]: %v", h.Name, ip, err))
			if k := failureKind(err); !slices.Contains(kinds, k) {
				kinds = append(kinds, k)
			}
			if ctx.Err() != nil {
				return nil, tempErr("4.4.5", "delivery cancelled")
			}
		}
	}
	if tlsFailures > 0 {
		// Never a silent downgrade: the requirement stands, we retry.
		return nil, tempErr("4.7.5", "TLS level %s required by %s not met by %s: %s",
			req.TLS.Level, req.TLS.RequiredBy, req.Domain, strings.Join(errs, "; "))
	}
	if dialled == 0 && refused > 0 {
		if loops == refused {
			// Postfix's "loops back to myself": DNS sends the domain's mail
			// to us; retrying cannot help, the sender must hear of it.
			return nil, permErr("5.4.6", "mail for %s loops back to myself: %s", req.Domain, strings.Join(errs, "; "))
		}
		// Often a split-horizon DNS view or a network the admin has not
		// allowed yet: kept and retried (bounced at expiry), so that a
		// configuration fix loses no mail.
		return nil, tempErr("4.4.4", "no mail host of %s has an address we may dial: %s", req.Domain, strings.Join(errs, "; "))
	}
	if len(kinds) == 0 { // no host had an address, or none could be looked at
		return nil, tempErr("4.4.1", "no mail host of %s could be tried: %s", req.Domain, strings.Join(errs, "; "))
	}
	e := tempErr("4.4.1", "no mail host of %s took a session (%s): %s", req.Domain, strings.Join(kinds, ", "), strings.Join(errs, "; "))
	e.NoSession = strings.Join(kinds, ", ")
	return nil, e
}

// failureKind says in a few words why one mail host took no session: what
// an admin reads first when a destination is unreachable.
func failureKind(err error) string {
	var hs *handshakeError
	var ne net.Error
	var te *textproto.Error
	var se *smtp.SMTPError
	switch {
	case errors.As(err, &hs):
		return "TLS handshake failed"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "host unreachable"
	case errors.As(err, &ne) && ne.Timeout():
		return "timed out"
	case errors.As(err, &te):
		return fmt.Sprintf("refused with %d", te.Code)
	case errors.As(err, &se):
		return fmt.Sprintf("refused with %d", se.Code)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return "connection closed by the server"
	}
	return "connection failed"
}

// dialHost connects to one address, reads the greeting, says EHLO and
// upgrades to TLS when the server offers it (or the smarthost demands).
// A failed TLS handshake is an error: we never fall back to plaintext on
// the same host after trying TLS.
func (d *Deliverer) dialHost(ctx context.Context, host, addr string, sh *Smarthost, level policy.TLSLevel, dane dnsres.TLSAState) (*outboundConn, error) {
	if (len(dane.Records) > 0 || dane.Unusable) && level < policy.TLSEncrypt {
		level = policy.TLSEncrypt // RFC 7672 §2.2: any TLSA record makes TLS mandatory
	}
	dctx, cancel := context.WithTimeout(ctx, d.opts.ConnectTimeout)
	defer cancel()
	raw, err := d.opts.Dial(dctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if sh != nil {
		// The smarthost's name is resolved by the dialer: check where it
		// led before saying anything.
		if ap, err := netip.ParseAddrPort(raw.RemoteAddr().String()); err == nil && d.isSelf(ap.Addr().Unmap(), int(ap.Port())) {
			raw.Close()
			return nil, errors.New("the smarthost is this gateway's own listener (mail loop)")
		}
	}
	// The greeting, EHLO, STARTTLS and AUTH are not context-aware either.
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	ip, _, _ := net.SplitHostPort(raw.RemoteAddr().String())
	oc := &outboundConn{host: host, ip: ip, raw: raw, daneRequired: len(dane.Records) > 0}
	tlsConf := d.tlsConfig(host, oc, dane.Records)

	wantTLS := (sh == nil || sh.TLS != "none") && level != policy.TLSNone
	var conn net.Conn = raw
	if sh != nil && sh.TLS == "implicit" {
		tc := tls.Client(raw, tlsConf)
		if err := tc.HandshakeContext(dctx); err != nil {
			raw.Close()
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		st := tc.ConnectionState()
		oc.tls, conn = &st, tc
	} else {
		raw.SetDeadline(time.Now().Add(d.opts.CommandTimeout))
		offered, err := StartTLSIfOffered(raw, d.opts.Hostname, wantTLS)
		if err != nil {
			raw.Close()
			return nil, err
		}
		if offered {
			tc := tls.Client(raw, tlsConf)
			if err := tc.HandshakeContext(dctx); err != nil {
				raw.Close()
				return nil, &handshakeError{err}
			}
			st := tc.ConnectionState()
			oc.tls, conn = &st, tc
		} else if sh != nil && sh.TLS == "starttls" {
			raw.Close()
			return nil, errors.New("smarthost does not offer STARTTLS")
		} else if level >= policy.TLSEncrypt {
			raw.Close()
			return nil, &tlsRequirementError{"STARTTLS not offered", "starttls-not-supported"}
		}
		raw.SetDeadline(time.Time{}) // the session sets its own per command
	}
	if err := meetsTLS(oc, level); err != nil {
		conn.Close()
		return nil, err
	}
	sess := newSession(conn, d.opts.CommandTimeout)
	if sh != nil && sh.TLS == "implicit" {
		if err := sess.greet(); err != nil {
			sess.close()
			return nil, err
		}
	}
	// After STARTTLS the session starts afresh (RFC 3207 §4.2); without
	// TLS the server simply hears EHLO again.
	if err := sess.hello(d.opts.Hostname); err != nil {
		sess.close()
		return nil, err
	}
	if sh != nil && sh.Username != "" {
		if oc.tls == nil {
			sess.close()
			return nil, errors.New("refusing to send smarthost credentials without TLS")
		}
		if err := sess.auth(sasl.NewPlainClient("", sh.Username, sh.Password)); err != nil {
			sess.close()
			return nil, fmt.Errorf("smarthost AUTH: %w", err)
		}
	}
	oc.sess = sess
	return oc, nil
}

// handshakeError is a STARTTLS handshake that failed after the server
// offered STARTTLS.
type handshakeError struct{ err error }

func (e *handshakeError) Error() string { return "STARTTLS handshake: " + e.err.Error() }
func (e *handshakeError) Unwrap() error { return e.err }

// clearAllowed says whether a failed STARTTLS handshake may be followed
// by a session in clear: only at level "may", with no MTA-STS policy of
// any mode and no TLSA records.
func clearAllowed(req policy.TLSRequirement, dane dnsres.TLSAState) bool {
	return req.Level == policy.TLSMay && req.MTASTS == nil && len(dane.Records) == 0 && !dane.Unusable && !req.RequireTLSExtension
}
