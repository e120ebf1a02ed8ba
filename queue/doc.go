// Package queue is sealgate's spool: a bbolt database holding every
// accepted message until each recipient is delivered or bounced.
//
// What it guarantees:
//   - Enqueue returns only after the message is committed and fsynced;
//     concurrent Enqueue calls share one transaction (group commit), and
//     a lone caller is committed at once.
//   - Message records and bodies are sealed with AES-256-GCM under the
//     spool key; nothing of an envelope or a body is on disk in clear, and
//     records about destinations are keyed by a keyed hash of the domain
//     (index.go), not by its name.
//   - A key that does not open the spool, or a missing key for a spool
//     that holds records, is refused at Open (key.go); a key is never
//     created for a spool that holds records. A truncated or damaged file
//     is refused too (spoolcheck.go), never mapped and crashed on.
//   - Each recipient has its own state (queued, deferred, delivered,
//     bounced), attempt count and next attempt; retries back off
//     exponentially (RetryInitial doubling up to RetryMax) until the
//     message expires (RFC 5321 §4.5.4.1 gives up after 4–5 days).
//   - A bounce and the DSN it causes are written in one transaction.
//   - A record that cannot be read is quarantined, never dropped, and
//     can be restored, under the key it was sealed with (quarantine.go).
//   - Escrowed messages (escrow.go) sit in buckets of their own, each
//     sealed with a key of its own that the escrow master key wraps; a
//     recipient's link token is kept only as its hash.
//   - Finished messages lose their body at once and their record after
//     Retention, so the file does not grow under steady load (bbolt
//     reuses freed pages).
//
// It knows nothing of SMTP: it does not build DSNs (the caller passes a
// DSNFunc) and does not decide when to deliver (the gateway's scheduler
// asks Pending once, then follows RecordAttempt's next attempt times).
package queue
