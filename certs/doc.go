// Package certs holds sealgate's key material and the crypto that uses
// it. For now: the listener certificate (a self-signed bootstrap on first
// start, reloadable on SIGHUP without dropping connections), the server
// TLS settings (TLS 1.2 or later, AEAD ciphers of 128 bits or more, RFC
// 9325's recommendations), and the pool of root CAs that destination
// certificates are verified against. DKIM keys, the OpenPGP keyring and
// S/MIME certificates come with their issues.
//
// It never logs or returns private key material in errors.
package certs
