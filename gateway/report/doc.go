// Package report writes what the gateway tells people after the fact:
// delivery status notifications to senders of mail that could not be
// delivered (RFC 3464 multipart/report with the original header, never
// the body; every line within RFC 5322's 998 octets: long diagnostics are
// folded and cut at 2,000 octets), and SMTP TLS reports (RFC 8460) to destination domains that
// publish _smtp._tls with rua=. Every TLS session a delivery tries is
// counted per UTC day, destination domain and policy (MTA-STS, DANE or
// none) in the spool; once the day is over, the aggregate goes out as
// gzipped JSON, by mail through our own queue or by HTTPS POST.
//
// It does not decide when a recipient bounces (the spool and the
// scheduler do) and does not deliver: report mail is enqueued like any
// other message. Not reported: failures to fetch an MTA-STS policy
// (sts-policy-fetch-error), which happen before any session.
package report
