// Package discovery finds correspondents' OpenPGP keys where their
// domains publish them, for the key store (certs.Keyring) to use when an
// admin imported none:
//
//   - the OpenPGP Web Key Directory (draft-koch-openpgp-webkey-service,
//     §3.1): the advanced method at https://openpgpkey.DOMAIN/.well-known/
//     openpgpkey/DOMAIN/hu/HASH?l=LOCAL when that host exists in the DNS,
//     else the direct method at https://DOMAIN/.well-known/openpgpkey/hu/
//     HASH?l=LOCAL, HASH being the z-base-32 SHA-1 of the lower-cased local
//     part. HTTPS only, certificates verified against the system roots and
//     outbound.extra_root_cas, no redirects, no proxy, answers of at most
//     certs.MaxDiscoveredKeyBytes, names resolved through the gateway's own
//     resolver, and no connection to a non-public address outside
//     outbound.allowed_private_networks (a partner's DNS must not make the
//     gateway reach inside).
//   - DNS OPENPGPKEY records (RFC 7929) at HASH._openpgpkey.DOMAIN, HASH
//     being the SHA2-256 of the local part truncated to 28 octets, in hex
//     — used only when the resolver is trusted to validate DNSSEC
//     (outbound.dnssec_trusted_resolver) and set the AD bit on the answer,
//     as DANE requires.
//   - DNS SMIMEA records (RFC 8162) at HASH._smimecert.DOMAIN, under the
//     same DNSSEC rule, for S/MIME certificates (DiscoverSMIMEKeys): only
//     records holding the whole certificate, DANE-EE (trusted as an
//     import is) or PKIX-EE (chained to the S/MIME trust store,
//     keys.smime_roots; refused when there is none), checked by
//     certs.VerifySMIMERecipient for the address.
//
// Every key found goes through certs.DiscoveredOpenPGP: only keys bound
// by a valid user ID to the address asked for, able to encrypt, not
// expired, not revoked, strong enough. Nothing found is an answer in
// words ("WKD 404", "no OPENPGPKEY record"), never an error.
//
// This package does the network I/O and nothing else, so that certs
// stays free of it: caching, negative caching, the "an imported key
// wins" rule and the bounds on what is kept are the keyring's
// (certs/discover.go). It does not implement the WKD policy file or
// submission protocol, the WKD "?l=" as a lookup key of its own, SRV
// records, HKP key servers (no authentication of the binding between
// key and address), or SMIMEA's CA usages (0, 2) and digest records,
// which can only confirm a certificate found elsewhere.
package discovery
