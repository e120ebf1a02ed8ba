// Package policy makes sealgate's decisions as values, without I/O:
// everything a decision needs comes in as arguments, and the result says
// what was decided and why, so that it can be logged, explained and
// table-tested. For now it decides relay authorisation (RFC 5321 §3.6.1:
// an MTA must not be an open relay); the per-recipient rule engine,
// escalation tags and transport requirements come with their issues.
package policy
