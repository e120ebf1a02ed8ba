// Package smtpin is the SMTP side facing the tenant: the listeners
// (STARTTLS and implicit TLS), one session per connection, and the
// checks a message passes before the spool commits it and the client
// hears 250: relay authorisation at RCPT (RFC 5321 §3.6.1), the tenant
// binding of clients in a provider's shared ranges (tenant.go), TLS before
// MAIL for remote clients, AUTH only after TLS (RFC 4954), SMTPUTF8
// (RFC 6531), SIZE (RFC 1870), CHUNKING (RFC 3030), REQUIRETLS
// (RFC 8689), connection and session limits, the smuggling defence, the
// hop count, the policy decision of every recipient (package policy), and
// the Received header (RFC 5321 §4.4).
//
// It does not deliver, retry or sign anything: it hands the message to a
// Spooler and tells the scheduler through OnQueued. Every error a client
// sees goes through toSMTPError, so that no internal detail reaches it.
//
// SMTP smuggling defence.
//
// SMTP ends a message at <CRLF>.<CRLF>. Some servers also accept other
// end-of-data forms, such as <LF>.<LF> or <LF>.<CRLF> (Postfix before
// 3.8.4, CVE-2023-51764; Sendmail, CVE-2023-51765; Exchange Online before
// its fix), as SEC Consult's "SMTP smuggling" research showed in December
// 2023. An attacker who can submit through a relay that passes bare LFs
// on can embed a second message after such a fake terminator: the relay
// sees one message, the next server sees two, and the smuggled one
// inherits the relay's SPF, DKIM and reputation — spoofed mail from the
// tenant's own domain.
//
// The protocol is spoken here, not by go-smtp's server: its reader takes
// a bare LF for a line end in commands and, after a timeout in DATA,
// reads the rest of the body as commands. Here a command ends at CRLF
// only, the content ends at CRLF "." CRLF only, and anything else — a
// bare CR or LF, NUL — is refused: a command line closes the connection,
// message content gets the message refused while the session stays in
// step (or, when configured, each bare line ending is rewritten to CRLF).
// Either way, no bare line ending leaves sealgate. A timeout or a broken
// transfer in DATA or BDAT closes the connection.
//
// Not supported: BINARYMIME, DSN parameters (RET, ENVID, NOTIFY, ORCPT),
// source routes (accepted and dropped, RFC 5321 §4.1.2), address literals
// as recipients.
package smtpin
