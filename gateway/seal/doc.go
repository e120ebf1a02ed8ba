// Package seal holds the chain-method handlers that transform a message
// before it leaves: pgp, which sends PGP/MIME (RFC 3156) to recipients
// whose OpenPGP keys are in the key store, smime, which sends S/MIME
// (RFC 8551) to recipients whose certificates are, and escrow
// (escrow.go), which keeps the message in the escrow store and sends each
// recipient a notice with a link of their own to the portal.
//
// What pgp does: the whole original MIME entity — every part, every
// attachment byte for byte — is encrypted to the key of every recipient
// of the delivery group, in one multipart/encrypted message. Header
// protection follows the "protected headers" convention that Thunderbird,
// Enigmail and others read (draft-ietf-lamps-header-protection): the
// encrypted entity carries the original Subject (its escalation tag
// already removed at intake) and copies of From, To, Cc, Reply-To, Date
// and Message-ID; outside, the Subject is a placeholder, the addressing
// and trace fields stay as they were (the next hops need them), and the
// original Content-* fields and Thread-Topic (which repeats the Subject)
// are gone.
//
// What smime does: the same, as one application/pkcs7-mime
// enveloped-data message built by certs.BuildSMIME (RFC 9788 header
// protection, hp="cipher"): AES-256-GCM when every recipient's
// certificate lists it in its S/MIME capabilities, else AES-256-CBC;
// RSA key transport (PKCS #1 v1.5, which every client reads) or ECDH
// key agreement. Each certificate is checked at the moment of use
// (valid now, key usage and extended key usage allow email encryption,
// it names the address), and the attempt record names every
// certificate by serial and fingerprint with its algorithms.
//
// OpenPGP keys come from certs.Keyring, which discovers them (WKD,
// OPENPGPKEY) when none was imported; the skip reason says what was
// tried.
//
// What they do not do: sign (sealgate holds no user's key), or split a
// group whose recipients are partly
// without a key — such a group skips to the next method of the chain,
// with the reason in the message's history, or, when the method ends
// the chain, is held with that reason. The scheduler DKIM-signs the
// form this package returns, and delivers it over the TLS the transport
// policy asks for.
package seal
