// Package seal holds the chain-method handlers that transform a message
// before it leaves: for now pgp, which sends PGP/MIME (RFC 3156) to
// recipients whose OpenPGP keys are in the key store. S/MIME and the
// escrow notice will live here too.
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
// Keys come from certs.Keyring, which discovers them (WKD, OPENPGPKEY)
// when none was imported; the skip reason says what was tried.
//
// What it does not do: sign (sealgate holds no user's key), or split a
// group whose recipients are partly
// without a key — such a group skips to the next method of the chain,
// with the reason in the message's history. The scheduler DKIM-signs
// the form this package returns, and delivers it over the TLS the
// transport policy asks for.
package seal
