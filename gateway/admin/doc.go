// Package admin is the admin side of a node: the HTTP API on the admin
// listener (health and readiness checks, the queue, the TLS history of
// destinations, the key store, policy reload, optional pprof) and its
// client, with which the CLI runs queue, domain and key commands against
// a running server — or, through OpenQueueOps and OpenKeyOps, directly
// against the spool file when no server holds it.
//
// The API has no authentication of its own: the listener must be
// loopback (config validation enforces it), as with Postfix's local-only
// tools. The package must not import the SMTP engine (smtpin, delivery,
// scheduler): the CLI links it to talk to a server, not to be one.
package admin
