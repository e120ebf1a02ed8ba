package audit

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sealgate/sealgate/queue"
)

// Report is what Verify found.
type Report struct {
	Entries     int    `json:"entries"`
	First       uint64 `json:"first"` // sequence numbers of the first and last entry
	Last        uint64 `json:"last"`
	Checkpoints int    `json:"checkpoints"`
	// Key is the public key (hex) the checkpoints were verified with:
	// compare it with the copy kept elsewhere (sealgate audit key), since
	// whoever replaced the signing key could sign anew.
	Key string `json:"key"`
	// Unsigned is how many entries follow the newest checkpoint, bound by
	// the chain only until the next one is signed.
	Unsigned int `json:"unsigned"`
	// LastCheckpoint is the newest signed checkpoint: the entries after
	// it are bound by the chain only, until the next one.
	LastCheckpoint *Checkpoint `json:"last_checkpoint,omitempty"`
	// Problem names the first entry or checkpoint that is not as written
	// ("" when the trail is intact); Problems are all found, at most 20.
	Problem  string   `json:"problem,omitempty"`
	Problems []string `json:"problems,omitempty"`
}

// OK reports whether the trail is intact.
func (r Report) OK() bool { return r.Problem == "" }

func (r *Report) bad(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if r.Problem == "" {
		r.Problem = msg
	}
	if len(r.Problems) < 20 {
		r.Problems = append(r.Problems, msg)
	}
}

// errStop ends a walk early.
var errStop = errors.New("stop")

// Verify walks the chain: every checkpoint's signature and the
// checkpoints' own chain back from the newest (so a deleted one is
// missed), every entry's place (no gap, no move), its link to the one
// before, its own hash, its agreement with the checkpoint at its place,
// and the head's agreement with the last entry. A pruned trail starts
// right after its recorded base, which a signed checkpoint anchors.
func (t *Trail) Verify() (Report, error) {
	rep := Report{Key: hex.EncodeToString(t.pub)}
	cps := map[uint64]Checkpoint{}
	err := t.store.ForEachAuditCheckpoint(func(seq uint64, data []byte) error {
		cp, problem := t.verifyCheckpoint(seq, data)
		rep.Checkpoints++
		if problem != "" {
			rep.bad("%s", problem)
			return nil
		}
		cps[seq] = cp
		return nil
	})
	if err != nil {
		return rep, err
	}
	base, baseHash, err := t.store.AuditBase()
	if err != nil {
		return rep, err
	}
	last, err := t.store.AuditLastCheckpoint()
	if err != nil {
		return rep, err
	}
	// The checkpoints' chain, from the newest back to the trail's base.
	if last > 0 {
		if cp, ok := cps[last]; ok {
			c := cp
			rep.LastCheckpoint = &c
		}
	}
	for seq := last; seq > 0 && seq >= base; {
		cp, ok := cps[seq]
		if !ok {
			rep.bad("the signed checkpoint at entry %d is missing (deleted)", seq)
			break
		}
		if cp.Prev >= seq {
			rep.bad("the checkpoint at entry %d names a later one before it (forged)", seq)
			break
		}
		seq = cp.Prev
	}
	if len(cps) > 0 && last == 0 {
		rep.bad("checkpoints are stored but the record of the newest is missing (deleted)")
	}
	if base > 0 {
		if cp, ok := cps[base]; !ok || cp.Hash != baseHash {
			rep.bad("the trail was pruned up to entry %d, but no signed checkpoint anchors it there", base)
		}
	}

	// The entries after the newest genuine checkpoint: a running gateway
	// signs them within an interval, so a long span of them means the
	// checkpoints that covered them were deleted.
	signed := base
	if rep.LastCheckpoint != nil {
		signed = max(signed, rep.LastCheckpoint.Seq)
	}
	var tail tailSpan

	prevSeq, prevHash := base, baseHash
	err = t.store.ForEachAudit(0, func(seq uint64, e *queue.AuditEntry, openErr error) error {
		rep.Entries++
		if rep.Entries == 1 {
			rep.First = seq
		}
		if seq <= base {
			rep.bad("entry %d is still there below the pruned base %d (moved)", seq, base)
			return nil
		}
		if seq != prevSeq+1 {
			if seq == prevSeq+2 {
				rep.bad("entry %d is missing (deleted)", prevSeq+1)
			} else {
				rep.bad("entries %d to %d are missing (deleted)", prevSeq+1, seq-1)
			}
			prevHash = "" // the link across the gap cannot hold
		}
		rep.Last = seq
		switch {
		case openErr != nil:
			rep.bad("entry %d %v (edited or damaged)", seq, openErr)
			prevSeq, prevHash = seq, ""
			return nil
		case e.Seq != seq:
			rep.bad("entry stored at %d says it is entry %d (moved or reordered)", seq, e.Seq)
		case e.Prev != prevHash && (prevHash != "" || seq == base+1):
			rep.bad("entry %d does not follow entry %d (reordered, or an entry before it changed)", seq, seq-1)
		case queue.AuditHash(e.Seq, e.Prev, e.Record) != e.Hash:
			rep.bad("entry %d was edited: its hash does not match its content", seq)
		}
		if cp, ok := cps[seq]; ok && cp.Hash != e.Hash {
			rep.bad("entry %d differs from the signed checkpoint of %s (edited and re-chained)", seq, cp.Time.Format(time.RFC3339))
		}
		if seq > signed {
			rep.Unsigned++
			tail.add(seq, e.Record)
		}
		if bytes.Contains(e.Record, []byte(unsignedTailType)) {
			var r Record
			if json.Unmarshal(e.Record, &r) == nil && r.Type == unsignedTailType {
				rep.bad("entry %d: on signing, sealgate found that %s", seq, r.Detail)
			}
		}
		prevSeq, prevHash = seq, e.Hash
		return nil
	})
	if err != nil {
		return rep, err
	}
	if p := t.tailProblem(tail, rep.LastCheckpoint); p != "" {
		rep.bad("%s", p)
	}
	if rep.Entries == 0 {
		rep.First, rep.Last = base+1, base
	}
	head, headHash, err := t.store.AuditHead()
	if err != nil {
		return rep, err
	}
	switch {
	case rep.Entries > 0 && head == 0:
		rep.bad("the record of the chain's head is missing (deleted)")
	case head > rep.Last && rep.Last+1 == head:
		rep.bad("entry %d is missing (deleted from the end)", head)
	case head > rep.Last:
		rep.bad("entries %d to %d are missing (deleted from the end)", rep.Last+1, head)
	case head == rep.Last && head != 0 && headHash != prevHash && prevHash != "":
		rep.bad("entry %d is not the entry the chain's head names (replaced)", head)
	}
	for seq := range cps {
		if seq > head {
			rep.bad("the signed checkpoint at entry %d names an entry that is gone (deleted from the end)", seq)
		}
	}
	if rep.Entries == 0 && base == 0 && head == 0 && rep.Checkpoints == 0 {
		// Nothing at all: a new node, or a trail deleted whole. The spool's
		// messages say whether their events were ever written to it.
		if a, ok := t.store.(auditedMessages); ok {
			n, err := a.AuditedMessages()
			if err != nil {
				return rep, err
			}
			if n > 0 {
				rep.bad("the trail is empty, but the spool holds messages whose events were written to it (the trail was deleted)")
			}
		}
	}
	return rep, nil
}

// auditedMessages is a Storage that can tell whether any message it
// holds had its events written to the trail (queue.Store).
type auditedMessages interface {
	AuditedMessages() (int, error)
}

// Filter selects records for Search and Export; zero fields match all.
type Filter struct {
	MessageID, QueueID, Sender, Recipient string
	From, To                              time.Time // [From, To)
	Type                                  string
}

func (f Filter) match(r Record) bool {
	switch {
	case f.MessageID != "" && !strings.EqualFold(strings.Trim(r.MessageID, "<>"), strings.Trim(f.MessageID, "<>")):
		return false
	case f.QueueID != "" && !strings.HasPrefix(r.QueueID, f.QueueID):
		return false
	case f.Sender != "" && !strings.EqualFold(r.From, f.Sender):
		return false
	case f.Type != "" && r.Type != f.Type && !strings.HasPrefix(r.Type, f.Type+"."):
		return false
	case !f.From.IsZero() && r.Time.Before(f.From):
		return false
	case !f.To.IsZero() && !r.Time.Before(f.To):
		return false
	}
	if f.Recipient == "" {
		return true
	}
	for _, rc := range r.Recipients {
		if strings.EqualFold(rc, f.Recipient) {
			return true
		}
	}
	return false
}

// Found is a record with its place in the chain.
type Found struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
	// Node is the host name of the node whose chain holds it, in a
	// search of a fleet's trail ("" for this node's own).
	Node string `json:"node,omitempty"`
	Record
}

// Search returns the records that match f, oldest first. A record whose
// filter fields match a queue ID (every record of a message names it)
// brings the message's other records along when the filter names a
// message, a sender or a recipient: the answer is the whole story.
func (t *Trail) Search(f Filter, limit int) ([]Found, error) {
	var hits []Found
	queueIDs := map[string]bool{}
	whole := f.MessageID != "" || f.Recipient != "" || f.Sender != ""
	err := t.each(func(fd Found) error {
		if f.match(fd.Record) {
			hits = append(hits, fd)
			if whole && fd.QueueID != "" {
				queueIDs[fd.QueueID] = true
			}
		}
		return nil
	})
	if err != nil || !whole || len(queueIDs) == 0 {
		return trim(hits, limit), err
	}
	// Second pass: every record of the messages found, in order, within
	// the time range.
	hits = hits[:0]
	err = t.each(func(fd Found) error {
		story := Filter{From: f.From, To: f.To, Type: f.Type}
		in := queueIDs[fd.QueueID] && story.match(fd.Record)
		if in || f.match(fd.Record) {
			hits = append(hits, fd)
		}
		return nil
	})
	return trim(hits, limit), err
}

func trim(hits []Found, limit int) []Found {
	if limit > 0 && len(hits) > limit {
		return hits[:limit]
	}
	return hits
}

// each calls fn for every entry that opens, decoded.
func (t *Trail) each(fn func(Found) error) error {
	return t.store.ForEachAudit(0, func(seq uint64, e *queue.AuditEntry, err error) error {
		if err != nil {
			return nil // Verify names it
		}
		var r Record
		if json.Unmarshal(e.Record, &r) != nil {
			return nil
		}
		return fn(Found{Seq: seq, Hash: e.Hash, Record: r})
	})
}

// Export writes the entries whose time is in [from, to) as JSON lines,
// each with its sequence number, previous hash and hash, so that a
// reader can recompute the chain, then the signed checkpoints that cover
// them: one {"entry": …} or {"checkpoint": …} object per line.
func (t *Trail) Export(w io.Writer, from, to time.Time) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	var first, last uint64
	err := t.store.ForEachAudit(0, func(seq uint64, e *queue.AuditEntry, err error) error {
		if err != nil {
			return fmt.Errorf("entry %d %v: run audit verify", seq, err)
		}
		var r Record
		if json.Unmarshal(e.Record, &r) != nil {
			return nil
		}
		if (!from.IsZero() && r.Time.Before(from)) || (!to.IsZero() && !r.Time.Before(to)) {
			return nil
		}
		if first == 0 {
			first = seq
		}
		last = seq
		return enc.Encode(map[string]any{"entry": e})
	})
	if err != nil {
		return err
	}
	err = t.store.ForEachAuditCheckpoint(func(seq uint64, data []byte) error {
		if first == 0 || seq < first-1 {
			return nil
		}
		var cp Checkpoint
		if json.Unmarshal(data, &cp) != nil {
			return nil
		}
		if err := enc.Encode(map[string]any{"checkpoint": cp}); err != nil {
			return err
		}
		if seq >= last {
			return errStop // the first checkpoint at or after the last entry covers it
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return err
	}
	return bw.Flush()
}

// Prune removes the entries older than cutoff up to the newest signed
// checkpoint among them, which stays and anchors the chain from there:
// the trail remains verifiable. It returns how many entries went.
func (t *Trail) Prune(cutoff time.Time) (int, error) {
	var anchor uint64
	err := t.store.ForEachAuditCheckpoint(func(seq uint64, data []byte) error {
		cp, problem := t.verifyCheckpoint(seq, data)
		if problem == "" && cp.Time.Before(cutoff) {
			anchor = seq
		}
		return nil
	})
	if err != nil || anchor == 0 {
		return 0, err
	}
	// Only whole entries older than the cutoff: the checkpoint's entry
	// itself may be the newest removed.
	var upTo uint64
	err = t.each(func(fd Found) error {
		if fd.Seq > anchor || !fd.Time.Before(cutoff) {
			return errStop
		}
		upTo = fd.Seq
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return 0, err
	}
	if upTo != anchor {
		return 0, nil // newer entries below the checkpoint: wait for the next one
	}
	rec := Admin(time.Now(), "audit-prune", "audit retention", "", fmt.Sprintf("entries up to %d (before %s) removed; the signed checkpoint at %d anchors the rest",
		anchor, cutoff.UTC().Format(time.RFC3339), anchor))
	return t.store.PruneAudit(anchor, rec)
}
