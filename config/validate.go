package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"github.com/jackc/pgx/v5/pgconn"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// validator checks a decoded Config. Each error points at the line where
// the offending value was set (in the user's file, or in the defaults).
type validator struct {
	pos  map[string]position
	errs Errors
}

func (v *validator) fail(path, format string, args ...any) {
	p, ok := v.pos[path]
	for !ok && path != "" {
		// A list element that was never written: point at the list.
		if i := strings.LastIndexAny(path, ".["); i > 0 {
			path = path[:i]
		} else {
			path = ""
		}
		p, ok = v.pos[path]
	}
	v.errs = append(v.errs, &FieldError{File: p.file, Line: p.line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) validate(c *Config) {
	if o := c.Escrow.ObjectStore; o.Endpoint != "" || o.Bucket != "" || o.AccessKeyFile != "" || o.SecretKeyFile != "" {
		if o.Endpoint == "" {
			v.fail("escrow.object_store.endpoint", "must be set (host[:port] of the S3-compatible store) when object_store is")
		} else if strings.Contains(o.Endpoint, "/") {
			v.fail("escrow.object_store.endpoint", "is host[:port] (%q has a scheme or path; set insecure for plain HTTP)", o.Endpoint)
		}
		if o.Bucket == "" {
			v.fail("escrow.object_store.bucket", "must be set")
		}
		if o.AccessKeyFile == "" || o.SecretKeyFile == "" {
			v.fail("escrow.object_store", "needs access_key_file and secret_key_file")
		}
		if o.Insecure {
			if host, _, err := net.SplitHostPort(o.Endpoint); err == nil {
				if ip, err := netip.ParseAddr(host); err != nil || !ip.IsLoopback() {
					v.fail("escrow.object_store.insecure", "plain HTTP is for a store on loopback only (%s is not)", o.Endpoint)
				}
			}
		}
	}
	if dsn := c.Store.Postgres.DSN; dsn != "" {
		// The parser's own error may quote the string, password and all.
		if _, err := pgconn.ParseConfig(dsn); err != nil {
			v.fail("store.postgres.dsn", "is not a PostgreSQL connection string (key=value pairs, or a postgres:// URL)")
		}
	}
	if c.Hostname != "" && !validHostname(c.Hostname) {
		v.fail("hostname", "%q is not a valid host name", c.Hostname)
	}
	if c.DataDir == "" {
		v.fail("data_dir", "must not be empty")
	}
	v.oneOf("log.format", c.Log.Format, "text", "json")
	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")

	in := &c.Inbound
	v.hostPort("inbound.listen", in.Listen, false)
	v.hostPort("inbound.implicit_tls_listen", in.ImplicitTLSListen, true)
	v.keyPair("inbound.tls", in.TLS.CertFile, in.TLS.KeyFile)
	for i, cidr := range in.TrustedNetworks {
		p := fmt.Sprintf("inbound.trusted_networks[%d]", i)
		pfx, err := netip.ParsePrefix(cidr)
		switch {
		case err != nil:
			v.fail(p, "invalid CIDR %q (write 10.0.0.0/8, 192.0.2.7/32 or 2001:db8::/32)", cidr)
		case pfx.Bits() == 0:
			v.fail(p, "%s trusts every address on the internet: that is an open relay", cidr)
		case pfx.Masked() != pfx:
			v.fail(p, "%s has host bits set; did you mean %s?", cidr, pfx.Masked())
		}
	}
	v.positive("inbound.max_message_bytes", in.MaxMessageBytes)
	v.positive("inbound.max_recipients", int64(in.MaxRecipients))
	if in.MaxLineLength < 512 {
		v.fail("inbound.max_line_length", "must be at least 512 (RFC 5321 §4.5.3.1.4), got %d", in.MaxLineLength)
	}
	v.positive("inbound.max_connections", int64(in.MaxConnections))
	v.positive("inbound.max_connections_per_ip", int64(in.MaxConnectionsPerIP))
	v.positive("inbound.idle_timeout", int64(in.IdleTimeout))
	v.positive("inbound.session_timeout", int64(in.SessionTimeout))
	v.oneOf("inbound.bare_line_endings", in.BareLineEndings, "reject", "normalize")
	if in.GreetPause < 0 || in.GreetPause.D() > time.Minute {
		v.fail("inbound.greet_pause", "must be between 0s and 1m, got %s", in.GreetPause.D())
	}
	if in.MaxBytesInFlight != 0 && in.MaxBytesInFlight < in.MaxMessageBytes {
		v.fail("inbound.max_bytes_in_flight", "must be 0 (no bound) or at least max_message_bytes (%d), got %d", in.MaxMessageBytes, in.MaxBytesInFlight)
	}
	if c.Outbound.MaxBytesInFlight < 0 {
		v.fail("outbound.max_bytes_in_flight", "must not be negative (0: no bound)")
	}
	if in.MinFreeDiskBytes < 0 {
		v.fail("inbound.min_free_disk_bytes", "must not be negative")
	}
	seen := map[string]bool{}
	for i, u := range in.Auth.Users {
		p := fmt.Sprintf("inbound.auth.users[%d]", i)
		switch {
		case u.Username == "":
			v.fail(p+".username", "must not be empty")
		case seen[u.Username]:
			v.fail(p+".username", "duplicate user %q", u.Username)
		}
		seen[u.Username] = true
		if err := checkHashFormat(u.PasswordHash); err != nil {
			v.fail(p+".password_hash", "%v", err)
		}
		switch u.APIScope {
		case "", "send", "read", "admin":
		default:
			v.fail(p+".api_scope", "must be send, read or admin, got %q", u.APIScope)
		}
	}
	v.validateTenants(in)

	v.hostPort("admin.listen", c.Admin.Listen, true)
	if ct := c.Admin.TLS; (ct.CertFile == "") != (ct.KeyFile == "") {
		v.fail("admin.tls.cert_file", "give both admin.tls.cert_file and admin.tls.key_file, or neither")
	}
	if a := c.Admin.Listen; a != "" && c.Admin.TLS.CertFile == "" {
		if host, _, err := net.SplitHostPort(a); err == nil && !isLoopbackHost(host) {
			v.fail("admin.listen", "must be a loopback address unless admin.tls has a certificate (API keys and tokens would cross the network in clear), got %q", a)
		}
	}

	q := &c.Queue
	v.positive("queue.retry_initial", int64(q.RetryInitial))
	v.positive("queue.retry_max", int64(q.RetryMax))
	if q.RetryInitial > q.RetryMax {
		v.fail("queue.retry_initial", "%s is longer than queue.retry_max %s", q.RetryInitial, q.RetryMax)
	}
	v.positive("queue.expiry", int64(q.Expiry))
	v.positive("queue.retention", int64(q.Retention))
	v.validateAudit(&c.Audit)
	v.validateWebhooks(&c.Webhooks)
	v.validateAPI(&c.API)
	if q.DelayWarning < 0 {
		// Not shorter than queue.expiry is allowed: the recipient then
		// bounces before any notice is due.
		v.fail("queue.delay_warning", "must not be negative (0s turns delay notices off), got %s", q.DelayWarning)
	}

	out := &c.Outbound
	v.hostPort("outbound.dns_resolver", out.DNSResolver, true)
	v.port("outbound.smtp_port", out.SMTPPort)
	for i, cidr := range out.AllowedPrivateNetworks {
		p := fmt.Sprintf("outbound.allowed_private_networks[%d]", i)
		switch pfx, err := netip.ParsePrefix(cidr); {
		case err != nil:
			v.fail(p, "invalid CIDR %q (write 10.20.0.0/16 or fd00:1::/64)", cidr)
		case pfx.Masked() != pfx:
			v.fail(p, "%s has host bits set; did you mean %s?", cidr, pfx.Masked())
		}
	}
	v.port("outbound.mta_sts_port", out.MTASTSPort)
	for i, f := range out.ExtraRootCAs {
		v.pemCerts(fmt.Sprintf("outbound.extra_root_cas[%d]", i), f)
	}
	sh := &out.Smarthost
	v.hostPort("outbound.smarthost.address", sh.Address, true)
	v.oneOf("outbound.smarthost.tls", sh.TLS, "starttls", "implicit", "none")
	if sh.PasswordFile != "" {
		v.readable("outbound.smarthost.password_file", sh.PasswordFile)
		if sh.Username == "" {
			v.fail("outbound.smarthost.username", "a password_file needs a username")
		}
	}
	if sh.Address != "" && sh.TLS == "none" {
		if host, _, err := net.SplitHostPort(sh.Address); err == nil && !isLoopbackHost(host) {
			v.fail("outbound.smarthost.tls", "\"none\" is only allowed for a smarthost on loopback, not %q", sh.Address)
		}
	}
	v.positive("outbound.max_concurrency", int64(out.MaxConcurrency))
	v.positive("outbound.max_per_destination", int64(out.MaxPerDestination))
	v.positive("outbound.connect_timeout", int64(out.ConnectTimeout))
	v.positive("outbound.command_timeout", int64(out.CommandTimeout))
	v.positive("outbound.idle_conn_timeout", int64(out.IdleConnTimeout))
	tlsLevels := []string{"none", "may", "encrypt", "verify", "dane", "dane-only"}
	v.oneOf("outbound.tls_policy.default", out.TLSPolicy.Default, tlsLevels...)
	for domain, level := range out.TLSPolicy.Domains {
		p := "outbound.tls_policy.domains." + domain
		if !validHostname(domain) {
			v.fail(p, "%q is not a valid domain", domain)
		}
		v.oneOf(p, level, tlsLevels...)
	}
	v.positive("outbound.tls_monitor.probe_interval", int64(out.TLSMonitor.ProbeInterval))
	v.positive("outbound.tls_monitor.report_after", int64(out.TLSMonitor.ReportAfter))
	v.positive("outbound.tls_monitor.concurrency", int64(out.TLSMonitor.Concurrency))
	v.validateDKIM(&c.DKIM)
	v.validateKeys(&c.Keys)
	v.validateEscrow(&c.Escrow, &c.Portal)
	v.validatePolicy(&c.Policy)
}

func (v *validator) oneOf(path, got string, allowed ...string) {
	for _, a := range allowed {
		if got == a {
			return
		}
	}
	v.fail(path, "must be one of %s, got %q", strings.Join(allowed, ", "), got)
}

func (v *validator) positive(path string, n int64) {
	if n <= 0 {
		v.fail(path, "must be greater than zero")
	}
}

func (v *validator) port(path string, p int) {
	if p < 1 || p > 65535 {
		v.fail(path, "port %d out of range 1-65535", p)
	}
}

// hostPort checks a host:port address; empty is allowed when optional.
func (v *validator) hostPort(path, addr string, optional bool) {
	if addr == "" {
		if !optional {
			v.fail(path, "must not be empty")
		}
		return
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.fail(path, "expected host:port, got %q", addr)
		return
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		v.fail(path, "port %q out of range 0-65535", port)
	}
}

func (v *validator) readable(path, file string) bool {
	f, err := os.Open(file)
	if err != nil {
		v.fail(path, "cannot read %s: %v", file, unwrapPathError(err))
		return false
	}
	f.Close()
	return true
}

func (v *validator) keyPair(path, certFile, keyFile string) {
	switch {
	case certFile == "" && keyFile == "":
		return
	case certFile == "":
		v.fail(path+".key_file", "is set but %s.cert_file is not: give both or neither", path)
		return
	case keyFile == "":
		v.fail(path+".cert_file", "is set but %s.key_file is not: give both or neither", path)
		return
	}
	if !v.readable(path+".cert_file", certFile) || !v.readable(path+".key_file", keyFile) {
		return
	}
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		v.fail(path+".cert_file", "%s with %s: %v", certFile, keyFile, err)
	}
}

func (v *validator) pemCerts(path, file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		v.fail(path, "cannot read %s: %v", file, unwrapPathError(err))
		return
	}
	n := 0
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			v.fail(path, "%s: bad certificate: %v", file, err)
			return
		}
		n++
	}
	if n == 0 {
		v.fail(path, "%s holds no PEM certificate", file)
	}
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// validHostname accepts a DNS name of letters, digits, hyphens and dots.
func validHostname(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if len(h) == 0 || len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}
