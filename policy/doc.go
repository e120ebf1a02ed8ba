// Package policy makes sealgate's decisions as values, without network
// I/O: everything a decision needs comes in as arguments, and the result
// says what was decided and why, so that it can be logged, explained and
// table-tested. It decides relay authorisation (RFC 5321 §3.6.1: an MTA
// must not be an open relay); per recipient, the chain of delivery
// methods from the rules, the escalation tags in the Subject (RFC 2047
// encoded words in any charset included) and the floor; the TLS requirement of a
// delivery from the configuration, the domain's TLS history, its MTA-STS
// policy (RFC 8461, parsed here, fetched by package mtasts) and
// REQUIRETLS (RFC 8689). Apply runs the rules on a message as it arrived
// and returns it as it must be spooled (tags and the escalation header
// removed, the rules' header changes made): the one code path of the
// live gateway and of `sealgate policy explain`.
//
// What it cannot read it does not take as harmless: a body it cannot
// read whole (RFC 2045/2046 parts it cannot decode, a broken structure,
// past its bounds) makes the content and attachment rules that the
// unread part could satisfy count as matching, or applies
// policy.on_scan_error; a Subject it cannot search counts as tagged.
// The decision says so.
//
// It does not fetch, resolve or deliver anything, and it does not store
// its decisions: the spool records them.
package policy
