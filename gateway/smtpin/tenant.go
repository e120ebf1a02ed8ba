package smtpin

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"log/slog"
	"net/textproto"
	"strings"

	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/policy"
)

// Tenant binding (inbound.tenants): a client in a tenant's networks that
// has not authenticated relays only mail that proves it is that
// tenant's. The envelope (sender domain, client certificate) is checked
// at MAIL, the header (From, Exchange Online tenant ID) after DATA. Every
// refusal is 550 5.7.1 saying what failed, and a log line naming the
// tenant.

// bindEnvelope returns the tenants whose binding the sender domain and
// the client certificate satisfy, or the refusal when none does.
func (c *conn) bindEnvelope(senderDomain string) ([]*policy.Tenant, error) {
	peer := c.peerCertificates()
	var bound []*policy.Tenant
	var failures []string
	first := ""
	for _, t := range c.tenants {
		why := t.CheckEnvelope(senderDomain, peer, c.srv.opts.ClientRoots)
		if why == "" {
			bound = append(bound, t)
			continue
		}
		if first == "" {
			first = why
		}
		failures = append(failures, t.Name+": "+why)
	}
	if len(bound) > 0 {
		return bound, nil
	}
	c.srv.opts.Logger.Warn("relay denied: tenant binding failed at MAIL", "client", c.clientIP.String(), "helo", c.helo,
		"tenant", tenantNames(c.tenants), "failed", strings.Join(failures, "; "))
	return nil, tenantRefusal(first)
}

// bindHeader checks the header against the tenants the envelope bound.
func (c *conn) bindHeader(log *slog.Logger, body []byte) error {
	header := readHeader(body)
	var failures []string
	first := ""
	for _, t := range c.tx.tenants {
		why := t.CheckHeader(header)
		if why == "" {
			return nil
		}
		if first == "" {
			first = why
		}
		failures = append(failures, t.Name+": "+why)
	}
	if first == "" {
		first = "no tenant binding" // unreachable: MAIL bound at least one
	}
	log.Warn("message refused: tenant binding failed", "tenant", tenantNames(c.tx.tenants), "failed", strings.Join(failures, "; "))
	return tenantRefusal(first)
}

func (c *conn) peerCertificates() []*x509.Certificate {
	if c.tls == nil {
		return nil
	}
	return c.tls.PeerCertificates
}

func tenantRefusal(why string) error {
	return toSMTPError(&replyError{Code: 550, Enhanced: smtp.EnhancedCode{5, 7, 1},
		Public: "Relaying denied: " + replySafe(why)}, "")
}

// replySafe keeps a reply text printable ASCII on one line: a domain in
// it came from the client.
func replySafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r >= 0x7f {
			return '?'
		}
		return r
	}, s)
}

func tenantNames(ts []*policy.Tenant) string {
	names := make([]string, len(ts))
	for i, t := range ts {
		names[i] = t.Name
	}
	return strings.Join(names, ",")
}

// readHeader reads the header block of msg with its fields unfolded
// and not decoded (address parsing decodes encoded words itself). A
// malformed line ends the header: what came before it counts.
func readHeader(msg []byte) map[string][]string {
	block := msg[:headerLen(msg)]
	r := textproto.NewReader(bufio.NewReader(bytes.NewReader(append(append([]byte{}, block...), "\r\n\r\n"...))))
	h, _ := r.ReadMIMEHeader()
	return h
}
