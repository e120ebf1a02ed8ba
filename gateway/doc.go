// Package gateway is the running sealgate node: it accepts mail from the
// tenant over SMTP (inbound*.go), commits it to the spool before saying
// 250, delivers it to destination MX hosts or a smarthost (resolve.go,
// deliver.go, connpool.go) under a scheduler with retries and expiry
// (scheduler.go), returns delivery status notifications for what could
// not be delivered (dsn.go), and serves health checks and the queue API
// on the admin listener (admin.go). gateway.go wires these from one
// config.Config.
//
// It follows RFC 5321 (SMTP), RFC 3207 (STARTTLS), RFC 4954 (AUTH),
// RFC 6531 (SMTPUTF8), RFC 8689 (REQUIRETLS, recorded only for now),
// RFC 7505 (null MX) and RFC 3464 (DSN).
//
// It does not decide policy (package policy does, without I/O), does not
// know how the spool is stored (package queue), and does not hold key
// material (package certs).
package gateway
