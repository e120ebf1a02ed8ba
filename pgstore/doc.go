// Package pgstore is the store a fleet of sealgate nodes shares, in
// PostgreSQL (store.postgres.dsn): what one node learns or is told must
// hold on every node. It keeps the TLS history of destinations (a
// ratchet raised by one node holds on all: the update can only raise
// it, whichever node writes at once), the REST API's keys and OAuth
// tokens, the correspondents' key records, the escrow store's buckets
// (sealed by the escrow before they get here: the database sees only
// ciphertext and token hashes), and the lock that elects the node
// running the fleet's leader-only jobs. Each has the methods of the
// spool's single-node one (queue.Shared, queue.SharedKV), so callers do
// not know which they use.
//
// The schema is migrated at start, under an advisory lock so that
// several nodes starting at once apply each migration once; a node
// refuses a database whose schema is newer than it knows.
//
// It must not hold mail: each node's spool stays its own (bbolt), as
// Postfix nodes keep theirs.
package pgstore
