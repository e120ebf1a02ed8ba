// Package mtasts finds the MTA-STS policy in force for a destination
// domain (RFC 8461 §3, §5): it reads the _mta-sts TXT record, fetches
// https://mta-sts.<domain>/.well-known/mta-sts.txt when the record's id
// changed or half the cached policy's lifetime has passed, and keeps a
// cached policy in force until it expires when a later fetch fails.
//
// Parsing a policy and matching MX hosts against it are pure and live in
// package policy; this package does the I/O. It does not enforce
// anything: the policy it returns is one input of the TLS decision.
// Not supported: the report-only "testing" mode beyond recording it
// (RFC 8461 §5: report, deliver anyway), and policy fetches through a
// proxy.
package mtasts
