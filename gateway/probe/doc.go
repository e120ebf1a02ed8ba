// Package probe looks at destinations without sending mail: a TLS probe
// of a domain's first reachable mail host (EHLO, STARTTLS, handshake,
// certificate verdict, TLSA records, MTA-STS policy) for `sealgate
// domains check` and `domains scan`; the monitor that re-probes every
// known destination domain on an interval and records the result in its
// TLS history; and `sealgate dkim check`, which compares the published
// DKIM records of our domains with the configured keys.
//
// It does not deliver and does not decide anything: what a probe finds
// becomes a TLS observation in the spool, which the TLS decision of the
// next delivery reads.
package probe
