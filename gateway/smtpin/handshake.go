package smtpin

import (
	"context"
	"crypto/tls"
	"slices"

	"github.com/sealgate/sealgate/certs"
)

// clientOffer is what a client's ClientHello offered. A failed handshake
// is logged with it: the reason alone ("protocol version not supported")
// does not tell the admin debugging a connector what the client speaks.
type clientOffer struct {
	hello    bool     // a ClientHello arrived
	versions []uint16 // the TLS versions it supports, GREASE left out
	sni      string   // the name it asked for, "" if none
}

// offerKey is the context key under which a handshake's clientOffer
// waits for the ClientHello.
type offerKey struct{}

// recordOffers returns a copy of cfg whose handshakes note the client's
// ClientHello in the clientOffer their context carries (see handshake).
// The copy is made once per server, not per connection: the session
// ticket keys of the config the handshake starts from must be the same
// for every connection, or no session could be resumed.
func recordOffers(cfg *tls.Config) *tls.Config {
	cfg = cfg.Clone()
	next := cfg.GetConfigForClient
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if o, ok := hello.Context().Value(offerKey{}).(*clientOffer); ok {
			o.hello, o.sni = true, hello.ServerName
			for _, v := range hello.SupportedVersions {
				if !isGREASE(v) {
					o.versions = append(o.versions, v)
				}
			}
		}
		if next != nil {
			return next(hello)
		}
		return nil, nil // go on with cfg
	}
	return cfg
}

// isGREASE reports whether v is one of the reserved values clients put
// among their versions to keep servers tolerant (RFC 8701).
func isGREASE(v uint16) bool { return v&0x0f0f == 0x0a0a && v>>8 == v&0xff }

// protocol names the highest TLS version the client offered.
func (o *clientOffer) protocol() string {
	switch {
	case !o.hello:
		return "no ClientHello"
	case len(o.versions) == 0:
		return "older than TLS1.0" // Go lists only TLS 1.0 and later
	}
	return certs.TLSVersionName(slices.Max(o.versions))
}

// handshake runs the server side of tc's handshake. A failure is logged
// with the client, the listener, what the client offered (its highest
// version, the name it asked for) and the reason.
func (c *conn) handshake(tc *tls.Conn, listener string) error {
	var offer clientOffer
	err := tc.HandshakeContext(context.WithValue(c.ctx, offerKey{}, &offer))
	if err != nil {
		attrs := []any{"client", c.clientIP.String(), "listener", listener}
		if c.helo != "" {
			attrs = append(attrs, "helo", c.helo)
		}
		attrs = append(attrs, "protocol", offer.protocol())
		if offer.sni != "" {
			attrs = append(attrs, "sni", offer.sni)
		}
		c.srv.opts.Logger.Warn("TLS handshake failed", append(attrs, "err", err.Error())...)
	}
	return err
}
