package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Quarantine.
//
// A record that does not decrypt or decode (a torn write, a record sealed
// under another key, tampering) must neither stop the spool nor vanish:
// it may be someone's only copy of a message. It is moved, byte for
// byte, to the quarantine bucket under "ID/message" and "ID/body", with
// "ID/info" saying when and why (sealed; the reason never quotes the
// content), logged and counted in Stats. Quarantined lists what is
// there; RestoreQuarantined puts a message back once its record opens —
// under the spool key, or under a key it was sealed with before (the
// admin hands that key in) — sealing it again under the spool key.

const (
	kindQuarantineInfo = "quarantine-info"
	partInfo           = "info"
)

// quarantineInfo is the ID/info record.
type quarantineInfo struct {
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
}

// QuarantinedMessage is what the quarantine holds of one message.
type QuarantinedMessage struct {
	ID     string    `json:"id"`
	Parts  []string  `json:"parts"` // "message", "body"
	Bytes  int       `json:"bytes"`
	At     time.Time `json:"quarantined_at,omitzero"`
	Reason string    `json:"reason,omitempty"`
}

// RestoreResult says what RestoreQuarantined did with one message.
type RestoreResult struct {
	ID       string `json:"id"`
	Restored bool   `json:"restored"`
	Error    string `json:"error,omitempty"`
}

// quarantine moves the record and body of id aside. It runs after the
// read that found the fault, so it checks again first: a record that
// was rewritten or deleted in between is left alone.
func (s *Store) quarantine(id string, cause error) {
	// The body file is read (a stream, never whole) before the commit:
	// the committer, which every intake waits for, reads no file.
	fileDamaged, checked := s.bodyFileDamaged(id)
	moved := false
	err := s.commit(context.Background(), 0, func(tx *bolt.Tx) error {
		moved = false
		msgs, bodies := tx.Bucket(bucketMessages), tx.Bucket(bucketBodies)
		rec, body := msgs.Get([]byte(id)), bodies.Get([]byte(id))
		if rec == nil && body == nil {
			return nil // gone meanwhile (finished, deleted)
		}
		// The file verdict holds for the body record it was read for
		// only: one rewritten or removed since is judged on its own.
		damagedFile := fileDamaged && bytes.Equal(body, checked)
		if !damagedFile && !s.unreadable(id, rec, body) {
			return nil
		}
		q := tx.Bucket(bucketQuarantine)
		for _, part := range []struct {
			b    *bolt.Bucket
			kind string
			v    []byte
		}{{msgs, kindMessage, rec}, {bodies, kindBody, body}} {
			if part.v == nil {
				continue
			}
			if err := q.Put([]byte(id+"/"+part.kind), append([]byte(nil), part.v...)); err != nil {
				return err
			}
			if err := part.b.Delete([]byte(id)); err != nil {
				return err
			}
		}
		info, _ := json.Marshal(quarantineInfo{At: s.now(), Reason: cause.Error()})
		moved = true
		return q.Put([]byte(id+"/"+partInfo), s.seal.seal(kindQuarantineInfo, id, info))
	})
	switch {
	case err != nil:
		s.logger.Error("cannot quarantine unreadable spool record", "queue_id", id, "reason", cause.Error(), "err", err)
	case moved:
		s.quarantined.Add(1)
		s.logger.Error("unreadable spool record quarantined", "queue_id", id, "reason", cause.Error())
	}
}

// unreadable reports whether the record or the body of id fails to open.
func (s *Store) unreadable(id string, rec, body []byte) bool {
	if rec == nil {
		return body != nil
	}
	if _, err := s.decodeMessage(id, rec); err != nil {
		return true
	}
	if body != nil {
		if _, err := s.seal.open(kindBody, id, body); err != nil {
			return true
		}
	}
	return false
}

// bodyFileDamaged reports whether the body of id is in a file that is
// missing or damaged, reading it through to the end as a stream, and
// the sealed body record it judged. A passing error (too many open
// files) is not damage.
func (s *Store) bodyFileDamaged(id string) (bool, []byte) {
	var ref *bodyRef
	var record []byte
	s.view(func(tx *bolt.Tx) error {
		sealed := tx.Bucket(bucketBodies).Get([]byte(id))
		if sealed == nil {
			return nil
		}
		record = bytes.Clone(sealed)
		plain, err := s.seal.open(kindBody, id, sealed)
		if err != nil {
			return nil // the record itself: unreadable() says so
		}
		if rest, isRef := bytes.CutPrefix(plain, []byte(bodyRefMagic)); isRef {
			ref = new(bodyRef)
			if json.Unmarshal(rest, ref) != nil {
				ref.Key = nil // opens nothing: damage
			}
		}
		return nil
	})
	if ref == nil {
		return false, record
	}
	r, err := s.openBodyFile(id, *ref)
	if err == nil {
		_, err = io.Copy(io.Discard, r)
		r.Close()
	}
	return err != nil && isBodyDamage(err), record
}

// quarantinedRecords counts the message and body records in quarantine.
func quarantinedRecords(tx *bolt.Tx) int {
	n := 0
	tx.Bucket(bucketQuarantine).ForEach(func(k, _ []byte) error {
		if !strings.HasSuffix(string(k), "/"+partInfo) {
			n++
		}
		return nil
	})
	return n
}

// Quarantined lists the quarantined messages, oldest ID first.
func (s *Store) Quarantined() ([]QuarantinedMessage, error) {
	byID := map[string]*QuarantinedMessage{}
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketQuarantine).ForEach(func(k, v []byte) error {
			id, part, _ := strings.Cut(string(k), "/")
			q := byID[id]
			if q == nil {
				q = &QuarantinedMessage{ID: id}
				byID[id] = q
			}
			if part != partInfo {
				q.Parts = append(q.Parts, part)
				q.Bytes += len(v)
				return nil
			}
			var info quarantineInfo
			if plain, err := s.seal.open(kindQuarantineInfo, id, v); err == nil && json.Unmarshal(plain, &info) == nil {
				q.At, q.Reason = info.At, info.Reason
			}
			return nil
		})
	})
	out := make([]QuarantinedMessage, 0, len(byID))
	for _, q := range byID {
		sort.Strings(q.Parts)
		out = append(out, *q)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, err
}

// RestoreQuarantined puts the quarantined messages ids (all of them when
// ids is empty) back in the queue. A message comes back only whole: its
// record must open and decode, and its body (when it has one) open,
// under the spool key or one of oldKeys (32-byte keys it may have been
// sealed with before). It is sealed again under the spool key, its
// pending recipients are due at once, and its history says it was
// restored. Each message has its result; a message that cannot be
// restored stays in quarantine. An ID that is not in quarantine is
// reported as such.
func (s *Store) RestoreQuarantined(ids []string, oldKeys ...[]byte) ([]RestoreResult, error) {
	sealers := []*sealer{s.seal}
	for i, k := range oldKeys {
		sl, err := newSealer(k)
		if err != nil {
			return nil, fmt.Errorf("old key %d: %w", i+1, err)
		}
		sealers = append(sealers, sl)
	}
	if len(ids) == 0 {
		all, err := s.Quarantined()
		if err != nil {
			return nil, err
		}
		for _, q := range all {
			ids = append(ids, q.ID)
		}
	}
	var results []RestoreResult
	for _, id := range ids {
		var refusal string
		err := s.commit(context.Background(), 0, func(tx *bolt.Tx) error {
			var err error
			refusal, err = s.restoreOne(tx, id, sealers)
			return err
		})
		if err != nil {
			return results, err
		}
		results = append(results, RestoreResult{ID: id, Restored: refusal == "", Error: refusal})
		if refusal == "" {
			s.logger.Warn("quarantined message restored to the queue", "queue_id", id)
		}
	}
	return results, nil
}

// restoreOne restores id inside tx, or says why it cannot (refusal);
// err is a failure of the transaction itself.
func (s *Store) restoreOne(tx *bolt.Tx, id string, sealers []*sealer) (refusal string, err error) {
	q := tx.Bucket(bucketQuarantine)
	rec, body := q.Get([]byte(id+"/"+kindMessage)), q.Get([]byte(id+"/"+kindBody))
	if rec == nil {
		if body != nil {
			return "only the body is in quarantine; nothing says where to deliver it", nil
		}
		return "not in quarantine", nil
	}
	if tx.Bucket(bucketMessages).Get([]byte(id)) != nil {
		return "a message with this ID is in the queue", nil
	}
	var m *Message
	var plainBody []byte
	for _, sl := range sealers {
		plain, err := sl.open(kindMessage, id, rec)
		if err != nil {
			continue
		}
		m = new(Message)
		if err := json.Unmarshal(plain, m); err != nil || m.ID != id {
			return "the record opens but does not decode as a message", nil
		}
		if body != nil {
			if plainBody, err = sl.open(kindBody, id, body); err != nil {
				return "the record opens, but its body does not", nil
			}
		}
		break
	}
	if m == nil {
		return "the record opens under none of the keys given; give the key it was sealed with", nil
	}
	if m.DoneAt.IsZero() && plainBody == nil {
		return "the message is unfinished and its body is missing", nil
	}
	now := s.now()
	makeDue(m, now)
	m.Events = append(m.Events, Event{Time: now, Kind: "restored", Detail: "restored from quarantine by admin"})
	if err := s.putMessage(tx, m); err != nil {
		return "", err
	}
	if plainBody != nil {
		if err := tx.Bucket(bucketBodies).Put([]byte(id), s.seal.seal(kindBody, id, plainBody)); err != nil {
			return "", err
		}
	}
	for _, part := range []string{kindMessage, kindBody, partInfo} {
		if err := q.Delete([]byte(id + "/" + part)); err != nil {
			return "", err
		}
	}
	return "", nil
}
