package config

import (
	"path/filepath"
	"time"
)

// Config is the whole sealgate configuration. Every field has an embedded
// default (defaults.yaml); a config file only lists the keys it changes.
type Config struct {
	// Hostname is the name sealgate uses in its greeting, in EHLO to
	// destinations, in Received headers and as the DSN reporting MTA.
	// Empty means the machine's host name.
	Hostname string `yaml:"hostname"`
	// DataDir holds the spool database, the spool key and the
	// self-signed certificate.
	DataDir  string   `yaml:"data_dir"`
	Log      Log      `yaml:"log"`
	Inbound  Inbound  `yaml:"inbound"`
	Admin    Admin    `yaml:"admin"`
	Queue    Queue    `yaml:"queue"`
	Outbound Outbound `yaml:"outbound"`
	DKIM     DKIM     `yaml:"dkim"`
	Keys     Keys     `yaml:"keys"`
	Escrow   Escrow   `yaml:"escrow"`
	Portal   Portal   `yaml:"portal"`
	Policy   Policy   `yaml:"policy"`
	Audit    Audit    `yaml:"audit"`
	Webhooks Webhooks `yaml:"webhooks"`
	API      API      `yaml:"api"`
	Store    Store    `yaml:"store"`

	// Source is the file the config was loaded from ("" for the embedded
	// defaults). Not a YAML key.
	Source string `yaml:"-"`

	// pos is where each key path was set, for FieldError.
	pos map[string]position
}

// FieldError is a problem with the value at path (a dotted key path such
// as "keys.archive_key_file") found after loading — by a check that needs
// more than the config package can do — named with the file and line
// that set it, as load errors are.
func (c *Config) FieldError(path string, err error) error {
	p := c.pos[path]
	if p.file == "" {
		p.file = defaultsName
	}
	return Errors{{File: p.file, Line: p.line, Path: path, Msg: err.Error()}}
}

// Log configures the operational log (not the audit trail).
type Log struct {
	Format string `yaml:"format"` // "text" or "json"
	Level  string `yaml:"level"`  // "debug", "info", "warn", "error"
}

// Inbound configures the SMTP listeners that accept mail from the tenant.
type Inbound struct {
	Listen            string `yaml:"listen"`              // host:port, STARTTLS listener
	ImplicitTLSListen string `yaml:"implicit_tls_listen"` // host:port, optional port-465-style listener ("" = off)
	TLS               TLS    `yaml:"tls"`
	// TrustedNetworks are the CIDRs allowed to relay without AUTH.
	TrustedNetworks []string `yaml:"trusted_networks"`
	// RequireTLS refuses MAIL before STARTTLS for non-loopback clients.
	RequireTLS          bool     `yaml:"require_tls"`
	MaxMessageBytes     int64    `yaml:"max_message_bytes"`
	MaxRecipients       int      `yaml:"max_recipients"`
	MaxLineLength       int      `yaml:"max_line_length"`
	MaxConnections      int      `yaml:"max_connections"`
	MaxConnectionsPerIP int      `yaml:"max_connections_per_ip"`
	IdleTimeout         Duration `yaml:"idle_timeout"`
	SessionTimeout      Duration `yaml:"session_timeout"`
	// BareLineEndings is "reject" (default) or "normalize": what to do
	// with a bare CR or LF in DATA (SMTP smuggling, CVE-2023-51764).
	BareLineEndings string `yaml:"bare_line_endings"`
	// GreetPause is how long a client outside the trusted networks waits
	// for the greeting; one that talks first is disconnected.
	GreetPause Duration `yaml:"greet_pause"`
	// MaxBytesInFlight bounds the message content held in memory by all
	// sessions together; beyond it MAIL and DATA get 452 4.3.1.
	MaxBytesInFlight int64 `yaml:"max_bytes_in_flight"`
	// MinFreeDiskBytes is what must stay free on the spool's disk; below
	// it MAIL gets 452 4.3.1 (Postfix's queue_minfree).
	MinFreeDiskBytes int64 `yaml:"min_free_disk_bytes"`
	Auth             Auth  `yaml:"auth"`
	// Tenants bind the provider's shared sending ranges to one tenant:
	// a client in a tenant's networks relays only mail of that tenant.
	Tenants []Tenant `yaml:"tenants"`
}

// Tenant binds a cloud provider's shared sending ranges (Microsoft 365,
// Google Workspace) to one tenant of that provider. A client in Networks
// may relay without AUTH only when the message proves it is this
// tenant's: envelope and header From in SenderDomains, and, when set,
// the Exchange Online tenant ID and the client certificate's name.
type Tenant struct {
	Name           string   `yaml:"name"`
	Networks       []string `yaml:"networks"`
	SenderDomains  []string `yaml:"sender_domains"`
	M365TenantID   string   `yaml:"m365_tenant_id"`
	ClientCertName string   `yaml:"client_cert_name"`
}

// TLS names the listener certificate. Empty files mean a self-signed
// certificate generated in the data dir on first start.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Auth lists the SMTP AUTH users. AUTH is only offered after TLS.
type Auth struct {
	Users []User `yaml:"users"`
}

// User is one SMTP AUTH account. PasswordHash is a bcrypt hash
// ("$2a$…", "$2b$…") or an argon2id PHC string ("$argon2id$v=19$…").
type User struct {
	Username     string `yaml:"username"`
	PasswordHash string `yaml:"password_hash"`
	// APIScope is the scope of the user's OAuth token from the password
	// grant: "" or send (send as the user's own address), read, admin.
	APIScope string `yaml:"api_scope"`
}

// Admin configures the loopback HTTP listener for health, metrics and the
// queue API.
type Admin struct {
	Listen string `yaml:"listen"` // host:port; "" disables it
	Pprof  bool   `yaml:"pprof"`  // expose /debug/pprof/
	// TLS is the listener's certificate. Without it the listener must be
	// loopback; with it (TLS 1.2 and up) it may face the network, for
	// the REST and send API.
	TLS TLS `yaml:"tls"`
	// Hosts are further Host header values the listener answers to (the
	// name integrators use, "relay.example.org:8025"); its own address
	// is always accepted.
	Hosts []string `yaml:"hosts"`
}

// Queue configures the spool and the retry schedule.
type Queue struct {
	// KeyFile holds the 32-byte spool key (AES-256-GCM), created with
	// mode 0600 on first start. Empty means <data_dir>/spool.key.
	KeyFile      string   `yaml:"key_file"`
	RetryInitial Duration `yaml:"retry_initial"` // first retry delay, doubled per attempt
	RetryMax     Duration `yaml:"retry_max"`     // cap of the retry delay
	Expiry       Duration `yaml:"expiry"`        // bounce what is still undelivered after this
	// Retention is how long finished (delivered/bounced) messages stay
	// visible in the queue (envelope and history only; bodies go at once).
	Retention Duration `yaml:"retention"`
	// DelayWarning is how long a recipient may stay undelivered (deferred
	// or held) before the sender is told, once, that the message is
	// delayed (RFC 3464 Action: delayed). 0s sends no delay notices.
	DelayWarning Duration `yaml:"delay_warning"`
}

// Outbound configures delivery to destinations.
type Outbound struct {
	// DNSResolver is host:port of the DNS server to query; "" means the
	// system's resolvers from /etc/resolv.conf.
	DNSResolver string `yaml:"dns_resolver"`
	// SMTPPort is the destination SMTP port (25; tests use another).
	SMTPPort int `yaml:"smtp_port"`
	// ExtraRootCAs are PEM files trusted in addition to the system roots,
	// for destination certificates and MTA-STS policy fetches.
	ExtraRootCAs []string `yaml:"extra_root_cas"`
	// MTASTSPort is the HTTPS port of MTA-STS policy hosts (443; tests
	// use another).
	MTASTSPort int `yaml:"mta_sts_port"`
	// DNSSECTrustedResolver says the resolver validates DNSSEC, so its AD
	// bit is believed and DANE (RFC 7672) applies.
	DNSSECTrustedResolver bool `yaml:"dnssec_trusted_resolver"`
	// AllowedPrivateNetworks are the non-public networks (loopback,
	// RFC 1918, unique local, link-local, …) that a destination's MX host
	// may resolve to and still be dialled. Empty: none, so that a
	// domain's DNS cannot make the gateway connect to something internal.
	// The smarthost is the admin's own choice and is not subject to it.
	AllowedPrivateNetworks []string `yaml:"allowed_private_networks"`
	// Smarthost, when Address is set, sends everything through one relay.
	Smarthost         Smarthost `yaml:"smarthost"`
	MaxConcurrency    int       `yaml:"max_concurrency"`     // deliveries in flight, all destinations
	MaxPerDestination int       `yaml:"max_per_destination"` // connections per destination domain
	// MaxBytesInFlight bounds the message bodies that deliveries hold in
	// memory together; an attempt waits for room. A body streamed from
	// its file counts for its read buffers, one loaded whole (to
	// encrypt it) for its size.
	MaxBytesInFlight int64    `yaml:"max_bytes_in_flight"`
	ConnectTimeout   Duration `yaml:"connect_timeout"`
	CommandTimeout   Duration `yaml:"command_timeout"`
	// IdleConnTimeout is how long an open connection to a destination is
	// kept for reuse by the next message to it.
	IdleConnTimeout Duration `yaml:"idle_conn_timeout"`
	// TLSPolicy sets how strictly TLS is required per destination domain.
	TLSPolicy TLSPolicy `yaml:"tls_policy"`
	// TLSMonitor re-checks known destination domains' TLS.
	TLSMonitor TLSMonitor `yaml:"tls_monitor"`
	// TLSRPT sends daily TLS reports (RFC 8460) to domains that ask.
	TLSRPT TLSRPT `yaml:"tlsrpt"`
}

// TLSRPT configures SMTP TLS Reporting (RFC 8460), off by default.
type TLSRPT struct {
	Enabled bool `yaml:"enabled"`
	// Organization and Contact go into each report; empty means the
	// host name and postmaster@<host name>.
	Organization string `yaml:"organization"`
	Contact      string `yaml:"contact"`
}

// TLSMonitor configures the periodic TLS probe of known domains.
type TLSMonitor struct {
	ProbeInterval Duration `yaml:"probe_interval"` // how often each known domain is probed
	// ReportAfter: a domain whose probes have found no TLS for this long
	// is reported (logged as a warning on every probe round).
	ReportAfter Duration `yaml:"report_after"`
	Concurrency int      `yaml:"concurrency"` // probes at once
}

// TLSPolicy maps destination domains to a TLS level: "none" (never
// STARTTLS), "may" (opportunistic), "encrypt" (TLS required, any
// certificate), "verify" (TLS with a certificate valid for the MX host),
// "dane" (DANE when the MX has DNSSEC-validated TLSA records, else may) or
// "dane-only" (such records are required).
type TLSPolicy struct {
	Default string            `yaml:"default"`
	Domains map[string]string `yaml:"domains"`
}

// Smarthost is an optional upstream relay.
type Smarthost struct {
	Address      string `yaml:"address"` // host:port; "" = deliver to MX
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"` // file holding the AUTH password
	// TLS is "starttls" (required), "implicit" (TLS from the first byte)
	// or "none" (only for a relay on loopback).
	TLS string `yaml:"tls"`
}

// DKIM configures the signing of outgoing mail (RFC 6376, RFC 8463).
type DKIM struct {
	// Keys are the signing keys. A message is signed with every key of
	// the domain of its From header: one RSA and one Ed25519 key for the
	// same domain give two signatures (dual signing).
	Keys []DKIMKey `yaml:"keys"`
}

// DKIMKey is one signing key: the domain it signs for, the selector its
// public key is published under (<selector>._domainkey.<domain>), and the
// PEM file holding the private key (RSA of 2048 bits or more, or Ed25519).
type DKIMKey struct {
	Domain   string `yaml:"domain"`
	Selector string `yaml:"selector"`
	KeyFile  string `yaml:"key_file"`
}

// Policy is the encryption policy: per-recipient chains of delivery
// methods chosen by rules, escalation tags and the forwarding rule, above
// an organisation-wide floor.
type Policy struct {
	// Minimum is the weakest method any recipient may get: tls,
	// tls-verified, pgp, smime or escrow.
	Minimum string `yaml:"minimum"`
	// EscalationChain is what the "escalate" tags and the header value
	// "encrypt" ask for.
	EscalationChain []string `yaml:"escalation_chain"`
	// Tags maps a Subject tag (matched case-insensitively) to "escalate"
	// or one method.
	Tags map[string]string `yaml:"tags"`
	// Forwarding is "allow" or "tls-only": auto-forwarded mail goes out
	// only by ForwardingMethod (tls-verified or tls), else
	// ForwardingFallback (drop or bounce); it is never escalated.
	Forwarding         string `yaml:"forwarding"`
	ForwardingMethod   string `yaml:"forwarding_method"`
	ForwardingFallback string `yaml:"forwarding_fallback"`
	// Rules are tried in order per recipient; the first that matches
	// decides, unless it says continue.
	Rules []Rule `yaml:"rules"`
	// RulesFile holds more rules (a YAML list), tried after Rules; it is
	// re-read on reload, so a security team can own it apart from the
	// rest of the config.
	RulesFile string `yaml:"rules_file"`
	// ContentScanBytes bounds how much of a message's text parts content
	// rules read (default 1 MiB).
	ContentScanBytes int64 `yaml:"content_scan_bytes"`
	// OnScanError is the chain for a recipient whose content or
	// attachment rules could not be decided because the body could not
	// be read whole (a part it cannot decode, a broken boundary, too deep
	// or too many parts, more text than ContentScanBytes). Empty: such
	// rules count as matching.
	OnScanError []string `yaml:"on_scan_error"`
}

// Rule is one policy rule: what it matches and what it does.
type Rule struct {
	Name  string    `yaml:"name"`
	Match RuleMatch `yaml:"match"`
	// Chain sets the recipient's methods, in order.
	Chain []string `yaml:"chain"`
	// Reject refuses the message at SMTP time (550 5.7.1) with this text.
	Reject string `yaml:"reject"`
	// Hold keeps the message in the queue for review (queue release).
	Hold bool `yaml:"hold"`
	// Receipt sends the sender a security receipt once every recipient
	// is final: per recipient, how the message left (match the sender
	// with match.from for per-sender receipts).
	Receipt       bool              `yaml:"receipt"`
	AddHeaders    map[string]string `yaml:"add_headers"`
	RemoveHeaders []string          `yaml:"remove_headers"`
	// Continue goes on to the next rules after this one matched.
	Continue bool `yaml:"continue"`
}

// RuleMatch lists conditions; all that are given must hold. Address
// patterns are globs; one without "@" matches the domain.
type RuleMatch struct {
	From []string `yaml:"from"`
	To   []string `yaml:"to"`
	// ToFile names a file of recipient patterns, one per line (# starts
	// a comment); ToFileEntries is its content, read at load.
	ToFile        string            `yaml:"to_file"`
	ToFileEntries []string          `yaml:"-"`
	AuthUser      []string          `yaml:"auth_user"`
	ClientNetwork []string          `yaml:"client_network"`
	Subject       string            `yaml:"subject"` // regular expression on the decoded Subject
	Header        map[string]string `yaml:"header"`  // header name → regular expression
	Tagged        string            `yaml:"tagged"`  // "yes", "no" or "" (either)
	Forwarded     string            `yaml:"forwarded"`
	MinSize       int64             `yaml:"min_size"`
	MaxSize       int64             `yaml:"max_size"`
	// Content is a regular expression searched in the text parts (not
	// attachments), decoded, up to policy.content_scan_bytes.
	Content string `yaml:"content"`
	// HasAttachments is "yes", "no" or "" (either).
	HasAttachments string `yaml:"has_attachments"`
}

// Duration is a time.Duration written in YAML as "90s", "5m", "120h".
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Store configures what a fleet of nodes shares (pgstore).
type Store struct {
	Postgres Postgres `yaml:"postgres"`
}

// Postgres is the shared store's database. With a DSN set, the TLS
// history of destinations, the REST API's keys and tokens, the
// correspondents' keys, the escrow store and the leader election live
// there; each node's spool stays its own.
type Postgres struct {
	// DSN is a libpq connection string or URL
	// ("host=db1 dbname=sealgate user=sealgate sslmode=verify-full");
	// keep the password out of it with passfile=… (or PGPASSFILE).
	DSN string `yaml:"dsn"`
	// KeyFile is the fleet key (32 bytes): it seals what the database
	// keeps but must not be able to use (the hashes of API key secrets).
	// The first node creates it; copy it to every other node. Empty:
	// <data_dir>/fleet.key.
	KeyFile string `yaml:"key_file"`
}

// Shared reports whether a shared store is configured.
func (c *Config) Shared() bool { return c.Store.Postgres.DSN != "" }

// FleetKeyFile is store.postgres.key_file, or fleet.key in the data dir.
func (c *Config) FleetKeyFile() string {
	if c.Store.Postgres.KeyFile != "" {
		return c.Store.Postgres.KeyFile
	}
	return filepath.Join(c.DataDir, "fleet.key")
}
