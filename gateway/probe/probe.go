package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/gateway/delivery"
	"github.com/sealgate/sealgate/gateway/mtasts"
	"github.com/sealgate/sealgate/internal/dnsres"
	"github.com/sealgate/sealgate/internal/netguard"
	"github.com/sealgate/sealgate/queue"
)

// ProbeResult is what a TLS probe of a domain found: where its mail goes
// and how that server does TLS. No mail is sent.
type ProbeResult struct {
	Domain     string   `json:"domain"`
	MXHosts    []string `json:"mx_hosts"`
	Host       string   `json:"host,omitempty"` // the host that answered
	IP         string   `json:"ip,omitempty"`
	STARTTLS   bool     `json:"starttls"`
	TLSVersion string   `json:"tls_version,omitempty"`
	Cipher     string   `json:"cipher,omitempty"`
	Verified   bool     `json:"verified"`
	CertError  string   `json:"cert_error,omitempty"`
	// Chain is the peer's certificate chain, leaf first: subject and issuer.
	Chain []string `json:"chain,omitempty"`
	// TLSA lists the _25._tcp TLSA records of Host, with whether the
	// answer was DNSSEC-authenticated (AD bit).
	TLSA       []string `json:"tlsa,omitempty"`
	TLSASecure bool     `json:"tlsa_secure,omitempty"`
	// MTASTS is the domain's MTA-STS policy as fetched now ("" if none),
	// or why it could not be used.
	MTASTS string `json:"mta_sts,omitempty"`
	// MTASTSMode is the mode of a usable policy.
	MTASTSMode string `json:"mta_sts_mode,omitempty"`
	Error      string `json:"error,omitempty"`
}

// Prober checks destinations' TLS the way delivery would meet it: EHLO,
// STARTTLS, handshake, certificate verification, then QUIT.
type Prober struct {
	resolver       *dnsres.Resolver
	roots          *x509.CertPool
	hostname       string // EHLO name
	port           int
	connectTimeout time.Duration
	commandTimeout time.Duration
	sts            *mtasts.Resolver
	// allowed are the non-public networks a probe may connect to
	// (outbound.allowed_private_networks), as for delivery.
	allowed []netip.Prefix
}

// New builds a prober from the outbound config (resolver, port, root
// CAs, timeouts).
func New(cfg *config.Config) (*Prober, error) {
	roots, err := certs.RootPool(cfg.Outbound.ExtraRootCAs)
	if err != nil {
		return nil, err
	}
	r, err := dnsres.New(cfg.Outbound.DNSResolver, 10*time.Second)
	if err != nil {
		return nil, err
	}
	r.DNSSECTrusted = cfg.Outbound.DNSSECTrustedResolver
	allowed := cfg.Outbound.PrivateNetworks()
	return &Prober{
		resolver: r, roots: roots, hostname: cfg.ServerHostname(), port: cfg.Outbound.SMTPPort,
		connectTimeout: cfg.Outbound.ConnectTimeout.D(), commandTimeout: min(cfg.Outbound.CommandTimeout.D(), time.Minute),
		sts: mtasts.New(nil, r, r.GuardedHTTPSClient(roots, mtasts.FetchTimeout, func(ip netip.Addr) error { return netguard.Refuse(ip, allowed) }),
			cfg.Outbound.MTASTSPort, nil),
		allowed: allowed,
	}, nil
}

// Probe examines domain's first reachable mail host.
func (p *Prober) Probe(ctx context.Context, domain string) ProbeResult {
	res := ProbeResult{Domain: strings.ToLower(domain)}
	hosts, err := p.resolver.MX(ctx, domain)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	for _, h := range hosts {
		res.MXHosts = append(res.MXHosts, h.Name)
	}
	p.checkMTASTS(ctx, &res)
	var errs []string
	for _, h := range hosts {
		for _, ip := range h.Addrs {
			if err := p.probeHost(ctx, h.Name, ip, &res); err != nil {
				errs = append(errs, fmt.Sprintf("%s[%s]: %v", h.Name, ip, err))
				continue
			}
			p.lookupTLSA(ctx, &res)
			return res
		}
	}
	res.Error = "no mail host answered: " + strings.Join(errs, "; ")
	return res
}

func (p *Prober) probeHost(ctx context.Context, host string, ip netip.Addr, res *ProbeResult) error {
	if err := netguard.Refuse(ip, p.allowed); err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, p.connectTimeout+p.commandTimeout)
	defer cancel()
	d := net.Dialer{Timeout: p.connectTimeout}
	raw, err := d.DialContext(dctx, "tcp", netip.AddrPortFrom(ip, uint16(p.port)).String())
	if err != nil {
		return err
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(p.commandTimeout))
	res.Host, res.IP = host, ip.String()
	offered, err := delivery.StartTLSIfOffered(raw, p.hostname, true)
	if err != nil {
		return err
	}
	res.STARTTLS = offered
	if !offered {
		res.Error = "STARTTLS not offered"
		raw.Write([]byte("QUIT\r\n"))
		return nil
	}
	tc := tls.Client(raw, delivery.ClientTLSConfig(host, func(cs tls.ConnectionState) {
		res.Verified, res.CertError, _ = delivery.VerifyPeer(cs, host, p.roots)
	}))
	if err := tc.HandshakeContext(dctx); err != nil {
		res.Error = "TLS handshake: " + err.Error()
		return nil // the host answered; its TLS is broken, which is the finding
	}
	st := tc.ConnectionState()
	res.TLSVersion, res.Cipher = certs.TLSVersionName(st.Version), tls.CipherSuiteName(st.CipherSuite)
	for _, c := range st.PeerCertificates {
		res.Chain = append(res.Chain, fmt.Sprintf("subject=%q issuer=%q not_after=%s",
			c.Subject.String(), c.Issuer.String(), c.NotAfter.UTC().Format(time.DateOnly)))
	}
	tc.Write([]byte("QUIT\r\n"))
	return nil
}

// checkMTASTS discovers and fetches the domain's MTA-STS policy now,
// without any cache, to show what a sender would find.
func (p *Prober) checkMTASTS(ctx context.Context, res *ProbeResult) {
	id, err := p.sts.Discover(ctx, res.Domain)
	if err != nil || id == "" {
		return
	}
	_, pol, err := p.sts.Fetch(ctx, res.Domain)
	if err != nil {
		res.MTASTS = fmt.Sprintf("id %s, policy unusable: %v", id, err)
		return
	}
	res.MTASTSMode = string(pol.Mode)
	res.MTASTS = fmt.Sprintf("id %s, mode %s, mx %s, max_age %s", id, pol.Mode, strings.Join(pol.MX, " "), pol.MaxAge)
}

// lookupTLSA reports the host's DANE records (RFC 7672 §2.2) as found.
func (p *Prober) lookupTLSA(ctx context.Context, res *ProbeResult) {
	res.TLSA, res.TLSASecure = p.resolver.TLSAAsPublished(ctx, res.Host)
}

// Observation turns a probe result into a history observation.
func (r ProbeResult) Observation() queue.TLSObservation {
	return queue.TLSObservation{Domain: r.Domain, Probe: true, Connected: r.Host != "",
		TLSVersion: r.TLSVersion, Verified: r.Verified, DANE: r.TLSASecure, MTASTSMode: r.MTASTSMode, Error: r.Error}
}
