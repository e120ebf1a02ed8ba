// Package dnsres is the DNS client of every outbound room: it asks one
// configured server (outbound.dns_resolver, else the first nameserver of
// /etc/resolv.conf) directly with miekg/dns, so that tests and operators
// decide where answers come from. It finds mail hosts (RFC 5321 §5.1,
// implicit MX, RFC 7505 null MX), their addresses, TXT records (MTA-STS,
// TLSRPT, DKIM) and TLSA records for DANE (RFC 7672 §2.2), and reports
// whether an answer was DNSSEC-authenticated (the AD bit, believed only
// when the resolver is configured as validating).
//
// It does not validate DNSSEC itself, does not cache (the resolver it
// asks does), and does not decide what an answer means for delivery
// beyond the RFC 3463 status a failure carries. Matching a certificate
// against TLSA records is delivery's job.
package dnsres
