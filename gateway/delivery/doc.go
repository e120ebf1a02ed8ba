// Package delivery is the SMTP client side of the gateway: for one
// message and the recipients of one destination it finds the hosts
// (through internal/dnsres), reuses a pooled connection or dials one,
// upgrades with STARTTLS whenever offered (RFC 3207), checks the peer
// against the TLS level the caller decided (certificate verification,
// DANE matching per RFC 7672, MTA-STS host matching per RFC 8461), and
// runs one transaction (RFC 5321, with SMTPUTF8 per RFC 6531 and
// REQUIRETLS per RFC 8689). It reports an attempt record and one outcome
// per recipient.
//
// The SMTP client is its own (session.go, transaction.go, body.go):
// the envelope goes in one flight where the server offers PIPELINING
// (RFC 2920), the body in BDAT chunks where it offers CHUNKING (RFC
// 3030, no dot-stuffing), else as DATA dot-stuffed in runs, never a byte
// at a time; BODY=8BITMIME (RFC 6152) declares an 8-bit body. It does
// not send BINARYMIME, DSN parameters (RET, ENVID, NOTIFY, ORCPT) or
// LMTP.
//
// It does not decide the TLS level (the scheduler asks package policy),
// does not fetch MTA-STS policies (package mtasts), does not touch the
// spool, and never retries: when to try again is the scheduler's call.
// The caller's context ends a delivery at any step: the session has
// deadlines per command, not a context, so its socket is closed under it
// (a shutdown never waits for a slow server), and the unsettled
// recipients come back 4.4.5.
// An MX host is dialled only at a public address or one in
// outbound.allowed_private_networks, and never at our own listener
// (guard.go): DNS must not aim the gateway at internal services.
// Bounds: at most outbound.max_per_destination sessions per destination
// (the scheduler keeps to it without blocking; this bound is a backstop),
// dnsres.MaxMXHosts hosts and MaxAddrsPerHost addresses per attempt, and
// a 64 KiB plaintext prelude before TLS.
package delivery
