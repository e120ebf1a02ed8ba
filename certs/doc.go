// Package certs holds sealgate's key material and the crypto that uses
// it: the listener certificate (a self-signed bootstrap on first start,
// reloadable on SIGHUP without dropping connections), the server TLS
// settings (TLS 1.2 or later, AEAD ciphers of 128 bits or more, RFC
// 9325's recommendations), the pool of root CAs that destination
// certificates are verified against, DKIM keys, and correspondents'
// public keys.
//
// The key store (keystore.go, keyring.go, openpgp.go) keeps OpenPGP
// public keys (RFC 4880, RFC 9580 packets as github.com/ProtonMail/go-crypto
// reads them) per canonical address, behind the KeyStore interface; the
// embedded implementation seals them in the spool's database. Imports
// are checked before anything is stored: private keys, expired or
// revoked keys, keys that cannot encrypt, RSA under 2048 bits and keys
// without an email user ID are refused. A stored key is checked again
// each time it is used. Encryption is AES-256 (AES-128 only for a key
// that refuses AES-256), SEIPD v2 with AEAD when every recipient key
// advertises it, else SEIPD v1 with MDC, never CAST5 or 3DES. Version
// 6 keys (RFC 9580) are read, checked and encrypted to through the same
// go-crypto v1 API as v4 keys (openpgp_v6_test.go); the v2 API is not
// needed for them.
//
// The same store keeps S/MIME recipient certificates (smime_keys.go):
// PEM, DER or PKCS #7 certs-only bundles, one entry per rfc822Name,
// named by the SHA-256 fingerprint of the certificate and showing its
// serial and issuer. An import is checked as VerifySMIMERecipient checks
// an explicitly imported certificate (valid now, a key and usage that
// allow email encryption, an email address; no chain required); private
// keys and PKCS #12 files are refused, CA certificates in a bundle are
// passed over. A stored certificate is checked again each time it is
// used.
//
// Discovery (discover*.go): a keyring made with NewDiscoveringKeyring
// asks an OpenPGPDiscoverer (certs/discovery does the network I/O: WKD,
// OPENPGPKEY) when the store has no key for an address and none was
// imported for it, keeps what it finds marked with its source until
// Key.Until, remembers a lookup that found nothing for a short while,
// lets one lookup per address run at a time, and keeps at most a
// bounded number of discovered entries. A discovered key is checked as
// an import is (DiscoveredOpenPGP) and must carry a valid user ID for
// the address asked for; it never replaces an imported one. S/MIME
// certificates are discovered the same way (FindSMIMERecipient, an
// SMIMEDiscoverer: SMIMEA), kept with their trust — DANE-EE used as an
// import is, PKIX-EE only while it chains to the S/MIME trust store.
//
// It does not build MIME (gateway/seal does).
//
// S/MIME encryption (smime*.go): BuildSMIME turns a spooled message into
// an RFC 8551 application/pkcs7-mime message, header fields protected as
// RFC 9788 describes (the Subject and everything but routing, threading
// and trace fields travel only inside; the outer Subject is a
// placeholder). EncryptSMIME writes the CMS (RFC 5652): EnvelopedData
// with AES-256-CBC (RFC 3565) by default, AuthEnvelopedData with
// AES-256-GCM (RFC 5083, RFC 5084) when the caller asks, which it should
// only when every recipient lists it in its S/MIME capabilities
// (SMIMECipherFor). RSA recipients (2048 bits or more) get key transport,
// RSAES-PKCS1-v1_5 by default or RSAES-OAEP with SHA-256 (RFC 3560, RFC
// 4055); EC recipients (P-256, P-384, P-521) get ephemeral-static ECDH,
// dhSinglePass-stdDH with the X9.63 KDF on SHA-256/384/512 and AES-256
// key wrap (RFC 5753, RFC 3394), built on the standard library because no
// maintained Go CMS library does key agreement. VerifySMIMERecipient
// decides whether a certificate may be encrypted to (RFC 8550 §4.4).
// Not done: signing, decryption, 3DES, RC2 or AES-128 content encryption
// (never written), RSA-KEM, X25519/X448 (RFC 8418), KEKRecipientInfo and
// password recipients, BER/indefinite lengths (output is DER), and
// revocation checks (CRL, OCSP).
//
// It never logs or returns private key material in errors.
package certs
