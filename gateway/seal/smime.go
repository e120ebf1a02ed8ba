package seal

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"log/slog"
	"strings"

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/gateway/delivery"
	"github.com/sealgate/sealgate/gateway/scheduler"
	"github.com/sealgate/sealgate/queue"
)

// RecipientCertificates finds the S/MIME certificate to encrypt to for
// an address — from the key store, or discovered (SMIMEA) within ctx —
// checked at the moment of the call, or an error saying why there is
// none and what was tried (wrapping certs.ErrNoUsableKey when there
// simply is no usable certificate). certs.Keyring implements it.
type RecipientCertificates interface {
	FindSMIMERecipient(ctx context.Context, address string) (*certs.SMIMERecipient, error)
}

// SMIME is the smime chain method.
type SMIME struct {
	certs       RecipientCertificates
	placeholder string
	rsa         certs.SMIMEKeyTransport
	logger      *slog.Logger
}

// SMIMEOptions configure NewSMIME; a nil Logger discards.
type SMIMEOptions struct {
	Certificates RecipientCertificates
	// Subject is the placeholder Subject outside (keys.encrypted_subject).
	Subject string
	// RSATransport is how the content key reaches RSA recipients; the
	// zero value is RSAES-PKCS1-v1_5, which every client reads.
	RSATransport certs.SMIMEKeyTransport
	Logger       *slog.Logger
}

// NewSMIME returns the smime method.
func NewSMIME(o SMIMEOptions) *SMIME {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &SMIME{certs: o.Certificates, placeholder: o.Subject, rsa: o.RSATransport, logger: o.Logger}
}

// Prepare encrypts body to the certificate of every recipient of g, in
// one S/MIME message (certs.BuildSMIME): AES-256-GCM when every
// certificate lists it, else AES-256-CBC. A recipient without a usable
// certificate makes the whole group move on to the next method of its
// chain (Skip, with the reason); at the end of a chain the group is
// held instead (deferred with the reason, bounced at expiry), so that a
// certificate imported meanwhile still serves it — as pgp does.
func (s *SMIME) Prepare(ctx context.Context, m *queue.Message, g scheduler.Group, spool scheduler.Body) scheduler.Action {
	var to []*certs.SMIMERecipient
	var missing []string
	for _, rcpt := range g.Rcpts {
		r, err := s.certs.FindSMIMERecipient(ctx, rcpt)
		if err != nil {
			missing = append(missing, strings.TrimPrefix(err.Error(), certs.ErrNoUsableKey.Error()+": "))
			continue
		}
		to = append(to, r)
	}
	if len(missing) > 0 {
		return s.cannot(g, "4.7.0", strings.Join(missing, "; "))
	}
	if err := ctx.Err(); err != nil {
		return scheduler.Action{Outcome: &queue.RcptOutcome{Status: "4.3.0", Message: "encryption interrupted"}}
	}
	recipients := make([]*x509.Certificate, len(to))
	for i, r := range to {
		recipients[i] = r.Cert
	}
	opts := certs.SMIMEOptions{Cipher: certs.SMIMECipherFor(recipients), RSATransport: s.rsa}
	body, err := spool.Bytes()
	if err != nil {
		return scheduler.Action{Outcome: &queue.RcptOutcome{Status: "4.3.0", Message: "the message could not be read from the spool"}}
	}
	out, err := certs.BuildSMIME(body, recipients, s.placeholder, opts)
	if errors.Is(err, certs.ErrSMIMEMalformedMessage) {
		// It will not get better by waiting: the header cannot be cut
		// into what travels inside and what stays outside.
		return s.cannot(g, "5.6.0", "the message cannot be encrypted with S/MIME: "+err.Error())
	}
	if err != nil {
		s.logger.Error("S/MIME encryption failed", "queue_id", m.ID, "err", err)
		return scheduler.Action{Outcome: &queue.RcptOutcome{Status: "4.3.0", Message: "S/MIME encryption failed"}}
	}
	names := make([]string, len(to))
	for i, r := range to {
		names[i] = r.Key.Address + " certificate serial " + r.Key.Serial + " fingerprint " + r.Key.Fingerprint +
			" (" + r.Key.Algorithm + ", " + keyManagement(r.Cert, s.rsa) + ")"
	}
	content := "enveloped-data, " + opts.Cipher.String()
	if opts.Cipher == certs.SMIMEAES256GCM {
		content = "authenveloped-data, " + opts.Cipher.String()
	}
	p := "smime: S/MIME " + content + " encrypted to " + strings.Join(names, ", ")
	s.logger.Info("message encrypted with S/MIME", "queue_id", m.ID, "domain", g.Domain, "protection", p)
	return scheduler.Action{Send: delivery.Bytes(out), Protection: p}
}

// cannot is the outcome when the method does not apply to the group:
// skip to the next method with the reason, or, at the end of the chain,
// hold (status 4.x.x) or return (5.x.x) with it.
func (s *SMIME) cannot(g scheduler.Group, status, why string) scheduler.Action {
	if g.HasNext {
		return scheduler.Action{Outcome: &queue.RcptOutcome{Skip: true, Status: status, Message: why}}
	}
	if strings.HasPrefix(status, "5") {
		return scheduler.Action{Outcome: &queue.RcptOutcome{Permanent: true, Status: status, Message: "the chain ends in smime and " + why}}
	}
	return scheduler.Action{Outcome: &queue.RcptOutcome{Status: status, Message: "held: the chain ends in smime and " + why}}
}

// keyManagement names how the content key reaches a recipient, for the
// attempt record.
func keyManagement(cert *x509.Certificate, rsa certs.SMIMEKeyTransport) string {
	if _, ok := cert.PublicKey.(*ecdsa.PublicKey); ok {
		return "ECDH key agreement, AES-256 key wrap"
	}
	return rsa.String()
}
