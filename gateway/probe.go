package gateway

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/config"
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
	d   *deliverer
	sts *mtastsResolver
}

// NewProber builds a prober from the outbound config (resolver, port,
// root CAs, timeouts).
func NewProber(cfg *config.Config) (*Prober, error) {
	roots, err := certs.RootPool(cfg.Outbound.ExtraRootCAs)
	if err != nil {
		return nil, err
	}
	r, err := newMXResolver(cfg.Outbound.DNSResolver, 10*time.Second)
	if err != nil {
		return nil, err
	}
	r.dnssecTrusted = cfg.Outbound.DNSSECTrustedResolver
	return &Prober{
		d: newDeliverer(delivererOptions{
			Hostname: cfg.ServerHostname(), Resolver: r, Port: cfg.Outbound.SMTPPort, RootCAs: roots,
			ConnectTimeout: cfg.Outbound.ConnectTimeout.D(), CommandTimeout: min(cfg.Outbound.CommandTimeout.D(), time.Minute),
		}),
		sts: newMTASTSResolver(nil, r, roots, cfg.Outbound.MTASTSPort, slog.New(slog.DiscardHandler)),
	}, nil
}

// Probe examines domain's first reachable mail host.
func (p *Prober) Probe(ctx context.Context, domain string) ProbeResult {
	res := ProbeResult{Domain: strings.ToLower(domain)}
	hosts, err := p.d.opts.Resolver.lookupMX(ctx, domain)
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
	dctx, cancel := context.WithTimeout(ctx, p.d.opts.ConnectTimeout+p.d.opts.CommandTimeout)
	defer cancel()
	raw, err := p.d.opts.Dial(dctx, "tcp", netip.AddrPortFrom(ip, uint16(p.d.opts.Port)).String())
	if err != nil {
		return err
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(p.d.opts.CommandTimeout))
	res.Host, res.IP = host, ip.String()
	offered, err := startTLSIfOffered(raw, p.d.opts.Hostname, true)
	if err != nil {
		return err
	}
	res.STARTTLS = offered
	if !offered {
		res.Error = "STARTTLS not offered"
		raw.Write([]byte("QUIT\r\n"))
		return nil
	}
	oc := &outboundConn{host: host}
	tc := tls.Client(raw, p.d.tlsConfig(host, oc, nil))
	if err := tc.HandshakeContext(dctx); err != nil {
		res.Error = "TLS handshake: " + err.Error()
		return nil // the host answered; its TLS is broken, which is the finding
	}
	st := tc.ConnectionState()
	res.TLSVersion, res.Cipher = tlsVersionName(st.Version), tls.CipherSuiteName(st.CipherSuite)
	res.Verified, res.CertError = oc.verified, oc.certErr
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
	id, err := p.sts.discover(ctx, res.Domain)
	if err != nil || id == "" {
		return
	}
	_, pol, err := p.sts.fetch(ctx, res.Domain)
	if err != nil {
		res.MTASTS = fmt.Sprintf("id %s, policy unusable: %v", id, err)
		return
	}
	res.MTASTSMode = string(pol.Mode)
	res.MTASTS = fmt.Sprintf("id %s, mode %s, mx %s, max_age %s", id, pol.Mode, strings.Join(pol.MX, " "), pol.MaxAge)
}

// lookupTLSA reports the host's DANE records (RFC 7672 §2.2) as found.
func (p *Prober) lookupTLSA(ctx context.Context, res *ProbeResult) {
	resp, err := p.d.opts.Resolver.query(ctx, "_25._tcp."+res.Host, dns.TypeTLSA)
	if err != nil || resp.Rcode != dns.RcodeSuccess {
		return
	}
	for _, rr := range resp.Answer {
		if t, ok := rr.(*dns.TLSA); ok {
			res.TLSA = append(res.TLSA, fmt.Sprintf("%d %d %d %s", t.Usage, t.Selector, t.MatchingType, t.Certificate))
		}
	}
	res.TLSASecure = resp.AuthenticatedData && len(res.TLSA) > 0
}

// Observation turns a probe result into a history observation.
func (r ProbeResult) Observation() queue.TLSObservation {
	return queue.TLSObservation{Domain: r.Domain, Probe: true, Connected: r.Host != "",
		TLSVersion: r.TLSVersion, Verified: r.Verified, DANE: r.TLSASecure, MTASTSMode: r.MTASTSMode, Error: r.Error}
}
