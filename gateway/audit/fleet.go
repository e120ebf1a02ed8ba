package audit

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sealgate/sealgate/pgstore"
)

// The fleet's trail. Each node keeps its chain in its spool, written in
// the transaction of each change, and ships it to the shared store
// (pgstore.ShipAudit) with the checkpoints it signed; there an auditor
// searches every node's records at once and verifies every chain against
// the key of the node that wrote it — a key the database never holds.
// The leader also signs fleet checkpoints: the heads of all chains at
// one moment, so that a node's chain cut short in the database after
// the statement is found even if its own checkpoints were lost with it.

// NodeID is a node's name in the fleet's trail: its audit public key,
// in hex. Whoever reads the trail can check a node's checkpoints with
// its name alone.
func NodeID(pub ed25519.PublicKey) string { return hex.EncodeToString(pub) }

// Head is a chain's newest entry.
type Head struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// FleetStatement is what a fleet checkpoint signs. Prev chains the
// checkpoints: the SHA-256 of the one before (its statement), "" for the
// first, so that one removed from between is missed.
type FleetStatement struct {
	Time  time.Time       `json:"time"`
	Prev  string          `json:"prev"`
	Heads map[string]Head `json:"heads"` // node → its chain's head
}

func statementHash(statement []byte) string {
	h := sha256.Sum256(statement)
	return hex.EncodeToString(h[:])
}

// Anchor is what a node keeps in its own spool of its place in the
// fleet's trail: how far its chain was shipped, and the last fleet
// checkpoint it signed. The database cannot rewrite it: a fleet's trail
// cut short, a node removed, or fleet checkpoints deleted up to one this
// node signed, are found against it.
type Anchor struct {
	Node        string `json:"node"`
	ShippedSeq  uint64 `json:"shipped_seq"`
	ShippedHash string `json:"shipped_hash,omitempty"`
	// Base is how far this node pruned its own chain: the fleet's copy
	// may not say more.
	Base uint64 `json:"base,omitempty"`
	// Signed is the last fleet checkpoint this node signed, Seen the
	// newest one it saw when it last shipped (IDs and statement hashes).
	SignedID   uint64 `json:"signed_id,omitempty"`
	SignedHash string `json:"signed_hash,omitempty"`
	SeenID     uint64 `json:"seen_id,omitempty"`
	SeenHash   string `json:"seen_hash,omitempty"`
}

// fleetMarks is a Storage that keeps this node's anchor (queue.Store).
type fleetMarks interface {
	FleetMark(name string) (uint64, string, error)
	SetFleetMark(name string, seq uint64, hash string) error
}

// Anchor reads this node's anchor.
func (t *Trail) Anchor() (Anchor, error) {
	a := Anchor{Node: NodeID(t.pub)}
	m, ok := t.store.(fleetMarks)
	if !ok {
		return a, nil
	}
	var err error
	if a.ShippedSeq, a.ShippedHash, err = m.FleetMark("shipped"); err != nil {
		return a, err
	}
	if a.SignedID, a.SignedHash, err = m.FleetMark("signed"); err != nil {
		return a, err
	}
	if a.SeenID, a.SeenHash, err = m.FleetMark("seen"); err != nil {
		return a, err
	}
	a.Base, _, err = t.store.AuditBase()
	return a, err
}

// checkMarks verifies that the fleet checkpoints this node signed and
// saw are still in the fleet's store as they were: an error names what
// was deleted or replaced (the database was tampered with).
func (t *Trail) checkMarks(fleet *pgstore.Store) error {
	m, ok := t.store.(fleetMarks)
	if !ok {
		return nil
	}
	for _, name := range []string{"signed", "seen"} {
		id, hash, err := m.FleetMark(name)
		if err != nil || id == 0 {
			if err != nil {
				return err
			}
			continue
		}
		cp, ok, err := fleet.FleetCheckpointByID(int64(id))
		switch {
		case err != nil:
			return err
		case !ok:
			return fmt.Errorf("audit: fleet checkpoint %d, which this node %s, is missing from the shared store (deleted)", id, name)
		case statementHash(cp.Statement) != hash:
			return fmt.Errorf("audit: fleet checkpoint %d differs from what this node %s (replaced)", id, name)
		}
	}
	return nil
}

func fleetSigned(statement []byte) []byte {
	return append([]byte("sealgate fleet audit checkpoint v1\n"), statement...)
}

// Ship copies this node's chain to the fleet's store.
func (t *Trail) Ship(fleet *pgstore.Store, hostname string) (int, error) {
	src, ok := t.store.(pgstore.AuditSource)
	if !ok {
		return 0, fmt.Errorf("audit: %T cannot be shipped", t.store)
	}
	t.shipMu.Lock()
	defer t.shipMu.Unlock()
	n, head, hash, err := fleet.ShipAuditHead(NodeID(t.pub), hostname, src)
	if err != nil {
		return n, err
	}
	m, ok := t.store.(fleetMarks)
	if !ok {
		return n, nil
	}
	if head > 0 {
		if err := m.SetFleetMark("shipped", head, hash); err != nil {
			return n, err
		}
	}
	// The newest fleet checkpoint, as this node saw it: a database that
	// later drops it (or every checkpoint, with a node's chain) is found
	// by this node's audit verify. A mark no longer there is an alarm.
	if err := t.checkMarks(fleet); err != nil {
		return n, err
	}
	last, ok, err := fleet.LastFleetCheckpoint()
	if err != nil || !ok {
		return n, err
	}
	return n, m.SetFleetMark("seen", uint64(last.ID), statementHash(last.Statement))
}

// SignFleet signs the heads of every chain the fleet's store holds now
// (the leader does, after shipping its own).
func (t *Trail) SignFleet(fleet *pgstore.Store, now time.Time) error {
	if t.key == nil {
		return fmt.Errorf("audit: no signing key")
	}
	nodes, err := fleet.AuditNodes()
	if err != nil {
		return err
	}
	// Never chain onto a history that lost what this node signed or saw.
	if err := t.checkMarks(fleet); err != nil {
		return err
	}
	st := FleetStatement{Time: now.UTC(), Heads: map[string]Head{}}
	last, hasLast, err := fleet.LastFleetCheckpoint()
	if err != nil {
		return err
	}
	if hasLast {
		st.Prev = statementHash(last.Statement)
	}
	for _, n := range nodes {
		seq, hash, err := n.AuditHead()
		if err != nil {
			return err
		}
		if seq > 0 {
			st.Heads[n.Node] = Head{Seq: seq, Hash: hash}
		}
	}
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	id, stored, err := fleet.PutFleetCheckpointAfter(last.ID, NodeID(t.pub), data, ed25519.Sign(t.key, fleetSigned(data)))
	if err != nil || !stored {
		return err // another was stored meanwhile: signed at the next round
	}
	if m, ok := t.store.(fleetMarks); ok {
		return m.SetFleetMark("signed", uint64(id), statementHash(data))
	}
	return nil
}

// NodeReport is one node's chain, verified in the fleet's store.
type NodeReport struct {
	Node     string `json:"node"`
	Hostname string `json:"hostname"`
	Report
}

// FleetReport is the whole fleet's trail, verified.
type FleetReport struct {
	Nodes            []NodeReport `json:"nodes"`
	FleetCheckpoints int          `json:"fleet_checkpoints"`
	Problems         []string     `json:"problems,omitempty"` // of the fleet checkpoints
}

// OK reports whether every chain and every fleet checkpoint holds.
func (r FleetReport) OK() bool {
	for _, n := range r.Nodes {
		if !n.OK() {
			return false
		}
	}
	return len(r.Problems) == 0
}

// VerifyFleet verifies every node's chain in the fleet's store against
// its node's key, and every fleet checkpoint against its signer's key,
// the one before it and the chains; with anchors (each from a node's own
// spool), also that the fleet's trail holds what those nodes shipped and
// signed.
func VerifyFleet(fleet *pgstore.Store, anchors ...Anchor) (FleetReport, error) {
	var rep FleetReport
	nodes, err := fleet.AuditNodes()
	if err != nil {
		return rep, err
	}
	known := map[string]*pgstore.AuditNode{}
	for _, n := range nodes {
		known[n.Node] = n
		nr := NodeReport{Node: n.Node, Hostname: n.Hostname}
		pub, err := hex.DecodeString(n.Node)
		if err != nil || len(pub) != ed25519.PublicKeySize {
			nr.bad("the node's name is not an audit public key")
			rep.Nodes = append(rep.Nodes, nr)
			continue
		}
		r, err := New(n, nil, pub).Verify()
		if err != nil {
			return rep, fmt.Errorf("node %s: %w", n.Hostname, err)
		}
		nr.Report = r
		rep.Nodes = append(rep.Nodes, nr)
	}
	cps, err := fleet.FleetCheckpoints()
	if err != nil {
		return rep, err
	}
	prev := ""
	byID := map[uint64]pgstore.FleetCheckpoint{}
	for _, cp := range cps {
		byID[uint64(cp.ID)] = cp
		rep.FleetCheckpoints++
		signer, ok := known[cp.Signer]
		pub, _ := hex.DecodeString(cp.Signer)
		if !ok || len(pub) != ed25519.PublicKeySize {
			rep.Problems = append(rep.Problems, fmt.Sprintf("fleet checkpoint %d is signed by no node of the fleet", cp.ID))
			continue
		}
		if !ed25519.Verify(pub, fleetSigned(cp.Statement), cp.Signature) {
			rep.Problems = append(rep.Problems, fmt.Sprintf("fleet checkpoint %d (by %s) has a bad signature (forged or edited)", cp.ID, signer.Hostname))
			continue
		}
		var st FleetStatement
		if err := json.Unmarshal(cp.Statement, &st); err != nil {
			rep.Problems = append(rep.Problems, fmt.Sprintf("fleet checkpoint %d does not decode", cp.ID))
			continue
		}
		if st.Prev != prev {
			rep.Problems = append(rep.Problems, fmt.Sprintf("fleet checkpoint %d does not follow the one before it (a fleet checkpoint was deleted)", cp.ID))
		}
		prev = statementHash(cp.Statement)
		for node, h := range st.Heads {
			n, ok := known[node]
			if !ok {
				rep.Problems = append(rep.Problems, fmt.Sprintf("fleet checkpoint %d of %s names a node whose chain is gone (deleted)", cp.ID, st.Time.Format(time.RFC3339)))
				continue
			}
			base, err := n.Base()
			if err != nil {
				return rep, err
			}
			if h.Seq <= base {
				continue // pruned since: the node's own base checkpoint anchors it
			}
			hash, ok, err := fleet.AuditEntryHash(node, h.Seq)
			if err != nil {
				return rep, err
			}
			switch {
			case !ok:
				rep.Problems = append(rep.Problems, fmt.Sprintf("entry %d of %s, named by the fleet checkpoint of %s, is missing (deleted)", h.Seq, n.Hostname, st.Time.Format(time.RFC3339)))
			case hash != h.Hash:
				rep.Problems = append(rep.Problems, fmt.Sprintf("entry %d of %s differs from the fleet checkpoint of %s (edited and re-chained)", h.Seq, n.Hostname, st.Time.Format(time.RFC3339)))
			}
		}
	}
	for _, a := range anchors {
		n, ok := known[a.Node]
		name := a.Node
		if len(name) > 12 {
			name = name[:12] + "…"
		}
		if ok {
			name = n.Hostname
		}
		if a.ShippedSeq > 0 {
			if !ok {
				rep.Problems = append(rep.Problems, fmt.Sprintf("node %s shipped its chain up to entry %d, and the fleet's trail has no chain of it (deleted)", name, a.ShippedSeq))
				continue
			}
			base, err := n.Base()
			if err != nil {
				return rep, err
			}
			if base > a.Base {
				rep.Problems = append(rep.Problems, fmt.Sprintf("the fleet's trail says %s pruned its chain up to entry %d; it pruned up to %d (entries deleted)", name, base, a.Base))
			}
			if a.ShippedSeq > base {
				hash, ok, err := fleet.AuditEntryHash(a.Node, a.ShippedSeq)
				switch {
				case err != nil:
					return rep, err
				case !ok:
					rep.Problems = append(rep.Problems, fmt.Sprintf("entry %d of %s, which it shipped, is missing from the fleet's trail (deleted)", a.ShippedSeq, name))
				case hash != a.ShippedHash:
					rep.Problems = append(rep.Problems, fmt.Sprintf("entry %d of %s differs from what it shipped (edited and re-chained)", a.ShippedSeq, name))
				}
			}
		}
		for _, mark := range []struct {
			id   uint64
			hash string
			verb string
		}{{a.SignedID, a.SignedHash, "signed"}, {a.SeenID, a.SeenHash, "saw"}} {
			if mark.id == 0 {
				continue
			}
			cp, ok := byID[mark.id]
			switch {
			case !ok:
				rep.Problems = append(rep.Problems, fmt.Sprintf("fleet checkpoint %d, which %s %s, is missing (deleted)", mark.id, name, mark.verb))
			case statementHash(cp.Statement) != mark.hash:
				rep.Problems = append(rep.Problems, fmt.Sprintf("fleet checkpoint %d differs from what %s %s (replaced)", mark.id, name, mark.verb))
			}
		}
	}
	slices.Sort(rep.Problems)
	return rep, nil
}

// SearchFleet searches every node's chain in the fleet's store and
// returns the records found, oldest first, each with its node.
func SearchFleet(fleet *pgstore.Store, f Filter, limit int) ([]Found, error) {
	nodes, err := fleet.AuditNodes()
	if err != nil {
		return nil, err
	}
	var all []Found
	for _, n := range nodes {
		hits, err := New(n, nil, nil).Search(f, 0)
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", n.Hostname, err)
		}
		for i := range hits {
			hits[i].Node = n.Hostname
		}
		all = append(all, hits...)
	}
	slices.SortStableFunc(all, func(a, b Found) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Node, b.Node)
	})
	return trim(all, limit), nil
}
