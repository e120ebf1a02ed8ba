package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sealgate/sealgate/queue"
)

// AuditSource is a node's own audit chain (queue.Store): what ShipAudit
// copies from.
type AuditSource interface {
	AuditHead() (uint64, string, error)
	AuditBase() (uint64, string, error)
	AuditLastCheckpoint() (uint64, error)
	ForEachAudit(from uint64, fn func(seq uint64, e *queue.AuditEntry, err error) error) error
	ForEachAuditCheckpoint(fn func(seq uint64, checkpoint []byte) error) error
}

// shipBatch is how many entries one shipping transaction copies.
const shipBatch = 500

// ShipAudit copies what node's chain in src holds and the shared store
// does not yet: entries after the last shipped one, as they are, the
// checkpoints, and the chain's head, base and newest checkpoint. What the
// node pruned goes here too. An entry that does not open in the spool
// stops the shipping there (audit verify names it); it returns how many
// entries it copied.
func (s *Store) ShipAudit(node, hostname string, src AuditSource) (int, error) {
	n, _, _, err := s.ShipAuditHead(node, hostname, src)
	return n, err
}

// ShipAuditHead is ShipAudit, also returning the head it shipped up to
// (its seq and hash; 0 when the chain is empty).
func (s *Store) ShipAuditHead(node, hostname string, src AuditSource) (int, uint64, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// What is shipped is a snapshot of the chain taken first: its head,
	// base and newest checkpoint, then only entries up to that head. The
	// database never names a head whose entry it does not hold.
	head, headHash, err := src.AuditHead()
	if err != nil {
		return 0, 0, "", err
	}
	base, baseHash, err := src.AuditBase()
	if err != nil {
		return 0, 0, "", err
	}
	last, err := src.AuditLastCheckpoint()
	if err != nil {
		return 0, 0, "", err
	}
	now := s.now()
	if _, err := s.pool.Exec(ctx, `INSERT INTO audit_nodes (node, hostname, updated) VALUES ($1, $2, $3)
		ON CONFLICT (node) DO UPDATE SET hostname = excluded.hostname`, node, hostname, now); err != nil {
		return 0, 0, "", err
	}
	var shipped uint64
	if err := s.pool.QueryRow(ctx, "SELECT coalesce(max(seq), 0) FROM audit_entries WHERE node = $1", node).Scan(&shipped); err != nil {
		return 0, 0, "", err
	}
	n := 0
	for from := max(shipped, base) + 1; from <= head; {
		// A batch is read out of the spool first, then written: no
		// database I/O while the spool's read transaction is open.
		var batch []queue.AuditEntry
		errFull := errors.New("batch full")
		err := src.ForEachAudit(from, func(seq uint64, e *queue.AuditEntry, openErr error) error {
			if seq > head {
				return errFull
			}
			if openErr != nil {
				return fmt.Errorf("audit entry %d %v: not shipped (run audit verify)", seq, openErr)
			}
			if e.Seq != seq {
				return fmt.Errorf("audit entry stored at %d says it is %d: not shipped (run audit verify)", seq, e.Seq)
			}
			batch = append(batch, *e)
			if len(batch) >= shipBatch {
				return errFull
			}
			return nil
		})
		if err != nil && !errors.Is(err, errFull) {
			return n, 0, "", err
		}
		if len(batch) == 0 {
			break
		}
		err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			for _, e := range batch {
				var r struct {
					Time      time.Time `json:"time"`
					QueueID   string    `json:"queue_id"`
					MessageID string    `json:"message_id"`
				}
				json.Unmarshal(e.Record, &r)
				var t *time.Time
				if !r.Time.IsZero() {
					t = &r.Time
				}
				if _, err := tx.Exec(ctx, `INSERT INTO audit_entries (node, seq, prev, hash, record, time, queue_id, message_id)
					VALUES ($1, $2, $3, $4, $5, $6, nullif($7, ''), nullif($8, '')) ON CONFLICT (node, seq) DO NOTHING`,
					node, e.Seq, e.Prev, e.Hash, []byte(e.Record), t, r.QueueID, r.MessageID); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return n, 0, "", err
		}
		n += len(batch)
		from = batch[len(batch)-1].Seq + 1
	}
	var cps []struct {
		seq  uint64
		data []byte
	}
	err = src.ForEachAuditCheckpoint(func(seq uint64, cp []byte) error {
		if seq <= head {
			cps = append(cps, struct {
				seq  uint64
				data []byte
			}{seq, append([]byte(nil), cp...)})
		}
		return nil
	})
	if err != nil {
		return n, 0, "", err
	}
	for _, cp := range cps {
		if _, err := s.pool.Exec(ctx, `INSERT INTO audit_checkpoints (node, seq, checkpoint) VALUES ($1, $2, $3)
			ON CONFLICT (node, seq) DO NOTHING`, node, cp.seq, cp.data); err != nil {
			return n, 0, "", err
		}
	}
	// The node's pruning, mirrored: entries up to its base go, and the
	// checkpoints before it (the base's own anchors the rest). A slower
	// shipping run never writes back an older head or base.
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if base > 0 {
			if _, err := tx.Exec(ctx, "DELETE FROM audit_entries WHERE node = $1 AND seq <= $2", node, base); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "DELETE FROM audit_checkpoints WHERE node = $1 AND seq < $2", node, base); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, `UPDATE audit_nodes SET base_seq = $2, base_hash = $3, head_seq = $4, head_hash = $5,
			last_checkpoint = $6, updated = $7 WHERE node = $1 AND head_seq <= $4 AND base_seq <= $2`,
			node, base, baseHash, head, headHash, last, now)
		return err
	})
	if err != nil {
		return n, 0, "", err
	}
	return n, head, headHash, nil
}

// AuditNode is one node's chain as the shared store holds it.
type AuditNode struct {
	Node     string // hex of its audit public key
	Hostname string
	Updated  time.Time
	s        *Store
}

// AuditNodes lists the nodes that shipped their chains.
func (s *Store) AuditNodes() ([]*AuditNode, error) {
	ctx, cancel := ctxTimeout()
	defer cancel()
	rows, err := s.pool.Query(ctx, "SELECT node, hostname, updated FROM audit_nodes ORDER BY hostname, node")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*AuditNode
	for rows.Next() {
		n := &AuditNode{s: s}
		if err := rows.Scan(&n.Node, &n.Hostname, &n.Updated); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

func (n *AuditNode) meta() (base uint64, baseHash string, head uint64, headHash string, last uint64, err error) {
	ctx, cancel := ctxTimeout()
	defer cancel()
	err = n.s.pool.QueryRow(ctx, "SELECT base_seq, base_hash, head_seq, head_hash, last_checkpoint FROM audit_nodes WHERE node = $1",
		n.Node).Scan(&base, &baseHash, &head, &headHash, &last)
	return
}

// The chain's reading side (what gateway/audit's Storage reads), so a
// node's shipped chain verifies and searches as its spool's does.

func (n *AuditNode) AuditHead() (uint64, string, error) {
	_, _, head, hash, _, err := n.meta()
	return head, hash, err
}

func (n *AuditNode) AuditBase() (uint64, string, error) {
	base, hash, _, _, _, err := n.meta()
	return base, hash, err
}

func (n *AuditNode) AuditLastCheckpoint() (uint64, error) {
	_, _, _, _, last, err := n.meta()
	return last, err
}

// ForEachAudit calls fn for every shipped entry from seq from on, in
// order, reading in pages.
func (n *AuditNode) ForEachAudit(from uint64, fn func(seq uint64, e *queue.AuditEntry, err error) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	next := from
	for {
		rows, err := n.s.pool.Query(ctx, "SELECT seq, prev, hash, record FROM audit_entries WHERE node = $1 AND seq >= $2 ORDER BY seq LIMIT 1000", n.Node, next)
		if err != nil {
			return err
		}
		var page []queue.AuditEntry
		for rows.Next() {
			var e queue.AuditEntry
			var rec []byte
			if err := rows.Scan(&e.Seq, &e.Prev, &e.Hash, &rec); err != nil {
				rows.Close()
				return err
			}
			e.Record = rec
			page = append(page, e)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for i := range page {
			if err := fn(page[i].Seq, &page[i], nil); err != nil {
				return err
			}
		}
		if len(page) < 1000 {
			return nil
		}
		next = page[len(page)-1].Seq + 1
	}
}

// ForEachAuditCheckpoint calls fn for every shipped checkpoint, oldest
// first.
func (n *AuditNode) ForEachAuditCheckpoint(fn func(seq uint64, checkpoint []byte) error) error {
	ctx, cancel := ctxTimeout()
	defer cancel()
	rows, err := n.s.pool.Query(ctx, "SELECT seq, checkpoint FROM audit_checkpoints WHERE node = $1 ORDER BY seq", n.Node)
	if err != nil {
		return err
	}
	type cp struct {
		seq  uint64
		data []byte
	}
	var cps []cp
	for rows.Next() {
		var c cp
		if err := rows.Scan(&c.seq, &c.data); err != nil {
			rows.Close()
			return err
		}
		cps = append(cps, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, c := range cps {
		if err := fn(c.seq, c.data); err != nil {
			return err
		}
	}
	return nil
}

// errReadOnly: a node's chain in the shared store is written by
// ShipAudit only.
var errReadOnly = errors.New("pgstore: a shipped audit chain is read-only")

func (n *AuditNode) PutAuditCheckpoint(uint64, []byte) error { return errReadOnly }
func (n *AuditNode) PruneAudit(uint64, []byte) (int, error)  { return 0, errReadOnly }
func (n *AuditNode) Audit(...[]byte) error                   { return errReadOnly }

// PutFleetCheckpoint stores a fleet checkpoint: a statement of every
// chain's head, signed by the leader's audit key.
func (s *Store) PutFleetCheckpoint(signer string, statement, signature []byte) (int64, error) {
	ctx, cancel := ctxTimeout()
	defer cancel()
	var id int64
	err := s.pool.QueryRow(ctx, "INSERT INTO audit_fleet_checkpoints (signer, statement, signature) VALUES ($1, $2, $3) RETURNING id",
		signer, statement, signature).Scan(&id)
	return id, err
}

// lockFleetCheckpoint serialises the writing of fleet checkpoints (a
// leader that has not yet noticed it lost the lock, and the new one).
const lockFleetCheckpoint int64 = 0x7365616c67617403

// PutFleetCheckpointAfter stores a fleet checkpoint only if the newest
// one is still after (its ID; 0: none yet), and returns the new ID;
// ok is false when another was stored meanwhile (sign again).
func (s *Store) PutFleetCheckpointAfter(after int64, signer string, statement, signature []byte) (id int64, ok bool, err error) {
	ctx, cancel := ctxTimeout()
	defer cancel()
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockFleetCheckpoint); err != nil {
			return err
		}
		var last int64
		if err := tx.QueryRow(ctx, "SELECT coalesce(max(id), 0) FROM audit_fleet_checkpoints").Scan(&last); err != nil {
			return err
		}
		if last != after {
			return nil
		}
		ok = true
		return tx.QueryRow(ctx, "INSERT INTO audit_fleet_checkpoints (signer, statement, signature) VALUES ($1, $2, $3) RETURNING id",
			signer, statement, signature).Scan(&id)
	})
	return id, ok, err
}

// LastFleetCheckpoint is the newest fleet checkpoint (ok false: none).
func (s *Store) LastFleetCheckpoint() (cp FleetCheckpoint, ok bool, err error) {
	return s.fleetCheckpointWhere("ORDER BY id DESC LIMIT 1")
}

// FleetCheckpointByID is one fleet checkpoint (ok false: none such).
func (s *Store) FleetCheckpointByID(id int64) (cp FleetCheckpoint, ok bool, err error) {
	return s.fleetCheckpointWhere("WHERE id = $1", id)
}

func (s *Store) fleetCheckpointWhere(where string, args ...any) (cp FleetCheckpoint, ok bool, err error) {
	ctx, cancel := ctxTimeout()
	defer cancel()
	err = s.pool.QueryRow(ctx, "SELECT id, signer, statement, signature FROM audit_fleet_checkpoints "+where, args...).
		Scan(&cp.ID, &cp.Signer, &cp.Statement, &cp.Signature)
	if errors.Is(err, pgx.ErrNoRows) {
		return cp, false, nil
	}
	return cp, err == nil, err
}

// FleetCheckpoint is one stored fleet checkpoint.
type FleetCheckpoint struct {
	ID        int64
	Signer    string
	Statement []byte
	Signature []byte
}

// FleetCheckpoints lists the fleet checkpoints, oldest first.
func (s *Store) FleetCheckpoints() ([]FleetCheckpoint, error) {
	ctx, cancel := ctxTimeout()
	defer cancel()
	rows, err := s.pool.Query(ctx, "SELECT id, signer, statement, signature FROM audit_fleet_checkpoints ORDER BY id")
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[FleetCheckpoint])
}

// AuditEntryHash is the hash of a node's shipped entry seq (ok false
// when it is not there).
func (s *Store) AuditEntryHash(node string, seq uint64) (hash string, ok bool, err error) {
	ctx, cancel := ctxTimeout()
	defer cancel()
	err = s.pool.QueryRow(ctx, "SELECT hash FROM audit_entries WHERE node = $1 AND seq = $2", node, seq).Scan(&hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	return hash, err == nil, err
}

// Base is a node's pruned base in the shared store.
func (n *AuditNode) Base() (uint64, error) {
	base, _, _, _, _, err := n.meta()
	return base, err
}
