// Package gateway is one running sealgate node. New builds every
// component from one config.Config and passes each what it needs: the
// spool (package queue), the inbound listener (smtpin), the delivery
// client (delivery), the scheduler with the chain-method handlers the
// node provides (scheduler), MTA-STS lookups (mtasts), DSNs and TLS
// reports (report), the TLS monitor (probe) and the admin API (admin).
// Start binds every listener and serves; Reload and ReloadPolicy swap
// what can change while running; Shutdown drains and stops.
//
// It holds no mail logic of its own: a behaviour belongs to the room
// that owns it, and the rooms meet only through the interfaces they
// export. The one adapter here is DKIM signing with a log line per
// unsigned domain (signing.go).
package gateway
