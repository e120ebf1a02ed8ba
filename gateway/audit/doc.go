// Package audit is the audit trail's room: what a compliance officer
// reads to answer "how was the message to patient X on 3 March
// protected?", and can prove was not edited afterwards.
//
// It owns the records' content (FromChange turns each change of a spool
// record into records: received with the client and the policy's
// decision, every attempt with its TLS facts and the destination's
// reply, skips, holds, admin actions, the final outcome per recipient),
// the signed checkpoints over the hash chain, verification, search,
// export and retention. It does not store: the chain lives behind
// Storage (queue.Store keeps it in the spool file, appended in the same
// transaction as the change it records), and it never touches SMTP.
//
// In a fleet (fleet.go) each node ships its chain to the shared store;
// the leader signs fleet checkpoints over every chain's head; search and
// verification then cover every node, each chain checked against the
// key of the node that signed it.
package audit
