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
// advertises it, else SEIPD v1 with MDC, never CAST5 or 3DES.
//
// It does not discover keys (WKD, OPENPGPKEY), build MIME (gateway/seal
// does) or hold S/MIME certificates yet.
//
// It never logs or returns private key material in errors.
package certs
