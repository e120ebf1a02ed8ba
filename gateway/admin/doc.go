// Package admin is the admin side of a node: the HTTP API on the admin
// listener (health and readiness checks, the queue, the TLS history of
// destinations, the key store, escrowed messages and their access logs,
// policy reload, optional pprof) and its client, with which the CLI runs
// queue, domain, key and escrow commands against a running server — or,
// through OpenQueueOps, OpenKeyOps and OpenEscrowOps, directly against
// the spool file when no server holds it. It never reads an escrowed
// message's content.
//
// The API has no authentication of its own: the listener must be
// loopback (config validation enforces it), as with Postfix's local-only
// tools. The package must not import the SMTP engine (smtpin, delivery,
// scheduler): the CLI links it to talk to a server, not to be one.
package admin
