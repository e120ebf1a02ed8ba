package config

import (
	"net/mail"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
)

// Escrow configures the escrow chain method: the message stays in the
// gateway (sealed in the spool under the escrow key) and each recipient
// gets a notice with a link to the portal.
type Escrow struct {
	// Enabled provides the escrow method whenever the portal is
	// configured (portal.public_url set). Off, or without a portal, a
	// chain that reaches escrow holds the recipient as "not provided".
	Enabled bool `yaml:"enabled"`
	// KeyFile is the escrow master key (32 bytes), created 0600 on first
	// start; empty means <data_dir>/escrow.key.
	KeyFile string `yaml:"key_file"`
	// Expiry: the content is destroyed this long after it was escrowed.
	Expiry Duration `yaml:"expiry"`
	// Organization, LogoURL and AccentColor brand the notice and the
	// portal.
	Organization string `yaml:"organization"`
	LogoURL      string `yaml:"logo_url"`
	AccentColor  string `yaml:"accent_color"`
	// NoticeSubject is the Subject of the notice; with SubjectInNotice
	// the message's own Subject is appended (off: nothing of the
	// content is in the notice).
	NoticeSubject   string `yaml:"notice_subject"`
	SubjectInNotice bool   `yaml:"subject_in_notice"`
	// SenderReceipt sends the sender of each escrowed message a receipt
	// with a link to the portal, where they can withdraw it for every
	// recipient or one after proving their address with a one-time code.
	SenderReceipt bool `yaml:"sender_receipt"`
	// ObjectStore, when its endpoint is set, keeps the sealed contents
	// in an S3-compatible bucket instead of the escrow store.
	ObjectStore ObjectStore `yaml:"object_store"`
}

// ObjectStore is an S3-compatible bucket (Amazon S3, MinIO, Ceph…).
type ObjectStore struct {
	Endpoint      string `yaml:"endpoint"` // host[:port]
	Bucket        string `yaml:"bucket"`
	Region        string `yaml:"region"`
	Prefix        string `yaml:"prefix"`
	AccessKeyFile string `yaml:"access_key_file"`
	SecretKeyFile string `yaml:"secret_key_file"`
	// Insecure speaks plain HTTP: only for a store on loopback.
	Insecure bool `yaml:"insecure"`
}

// Portal configures the recipients' HTTPS portal for escrowed mail.
type Portal struct {
	// Listen is host:port of the portal's HTTPS listener.
	Listen string `yaml:"listen"`
	// PublicURL is the portal's address as recipients reach it
	// (https://secure.example.org); links are PublicURL/m/<token>.
	// Empty: no portal, and no escrow.
	PublicURL string `yaml:"public_url"`
	// TLS is the portal's certificate; empty means the gateway's own
	// (inbound.tls, or the self-signed one).
	TLS TLS `yaml:"tls"`
	// MailFrom is the From of the code mails ("" means
	// no-reply@<hostname>); they go with a null envelope sender.
	MailFrom string `yaml:"mail_from"`
	// SessionLifetime bounds a session after a code was accepted.
	SessionLifetime Duration `yaml:"session_lifetime"`
}

// EscrowKeyFile is escrow.key_file, or escrow.key in the data dir.
func (c *Config) EscrowKeyFile() string {
	if c.Escrow.KeyFile != "" {
		return c.Escrow.KeyFile
	}
	return filepath.Join(c.DataDir, "escrow.key")
}

// EscrowOn reports whether this node provides the escrow method.
func (c *Config) EscrowOn() bool { return c.Escrow.Enabled && c.Portal.PublicURL != "" }

// PortalMailFrom is portal.mail_from, or no-reply@<hostname>.
func (c *Config) PortalMailFrom() string {
	if c.Portal.MailFrom != "" {
		return c.Portal.MailFrom
	}
	return "no-reply@" + c.ServerHostname()
}

var accentColor = regexp.MustCompile(`^#[0-9a-fA-F]{6}$`)

func (v *validator) validateEscrow(e *Escrow, p *Portal) {
	v.positive("escrow.expiry", int64(e.Expiry))
	if e.AccentColor != "" && !accentColor.MatchString(e.AccentColor) {
		v.fail("escrow.accent_color", "must be a colour as #rrggbb, got %q", e.AccentColor)
	}
	if e.LogoURL != "" {
		if u, err := url.Parse(e.LogoURL); err != nil || u.Scheme != "https" || u.Host == "" {
			v.fail("escrow.logo_url", "must be an https:// URL, got %q", e.LogoURL)
		}
	}
	for path, s := range map[string]string{"escrow.organization": e.Organization, "escrow.notice_subject": e.NoticeSubject} {
		if strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) || len(s) > 200 {
			v.fail(path, "must be one line of at most 200 bytes without control characters")
		}
	}
	if strings.TrimSpace(e.NoticeSubject) == "" {
		v.fail("escrow.notice_subject", "must not be empty")
	}
	if p.PublicURL != "" {
		u, err := url.Parse(p.PublicURL)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
			v.fail("portal.public_url", "must be https://host[:port] (no path), got %q", p.PublicURL)
		}
		v.hostPort("portal.listen", p.Listen, false)
	}
	v.keyPair("portal.tls", p.TLS.CertFile, p.TLS.KeyFile)
	if p.MailFrom != "" {
		if a, err := mail.ParseAddress(p.MailFrom); err != nil || a.Name != "" {
			v.fail("portal.mail_from", "must be a bare address (name@domain), got %q", p.MailFrom)
		}
	}
	v.positive("portal.session_lifetime", int64(p.SessionLifetime))
}
