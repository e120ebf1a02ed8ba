package audit

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/sealgate/sealgate/internal/safeio"
	"github.com/sealgate/sealgate/queue"
)

// Storage keeps the chain (queue.Store implements it).
type Storage interface {
	AuditHead() (uint64, string, error)
	// AuditBase is the last entry pruned (0 when none was).
	AuditBase() (uint64, string, error)
	// AuditLastCheckpoint is the newest checkpoint's entry (0: none).
	AuditLastCheckpoint() (uint64, error)
	ForEachAudit(from uint64, fn func(seq uint64, e *queue.AuditEntry, err error) error) error
	PutAuditCheckpoint(seq uint64, checkpoint []byte) error
	ForEachAuditCheckpoint(fn func(seq uint64, checkpoint []byte) error) error
	PruneAudit(seq uint64, record []byte) (int, error)
	Audit(records ...[]byte) error
}

// Checkpoint is a signed statement that the chain's entry Seq had hash
// Hash at Time: whoever edits, deletes or reorders an entry up to Seq
// must forge it. Key is the signer's public key (hex).
type Checkpoint struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
	// Prev is the entry of the checkpoint before this one (0 for the
	// first): checkpoints form a signed chain of their own, so that one
	// deleted is missed.
	Prev uint64    `json:"prev"`
	Time time.Time `json:"time"`
	// Interval is the signer's audit.checkpoint_interval in seconds (0
	// in checkpoints signed before it was kept): the entries after the
	// newest checkpoint are judged by the interval they were written
	// under, though the setting has changed since.
	Interval  int64  `json:"interval_s,omitempty"`
	Key       string `json:"key"`
	Signature string `json:"signature"` // base64 Ed25519 over signedBytes
}

func (c Checkpoint) signedBytes() []byte {
	fields := strconv.FormatUint(c.Seq, 10) + "\n" + c.Hash + "\n" +
		strconv.FormatUint(c.Prev, 10) + "\n" + c.Time.UTC().Format(time.RFC3339Nano) + "\n"
	if c.Interval == 0 {
		return []byte("sealgate audit checkpoint v2\n" + fields)
	}
	return []byte("sealgate audit checkpoint v3\n" + fields + strconv.FormatInt(c.Interval, 10) + "\n")
}

// Trail signs checkpoints and reads the chain of a Storage.
type Trail struct {
	shipMu   sync.Mutex // one shipping at a time (fleet.go)
	store    Storage
	key      ed25519.PrivateKey // nil: can verify only
	pub      ed25519.PublicKey
	interval time.Duration // audit.checkpoint_interval, for Verify
}

// DefaultCheckpointInterval is audit.checkpoint_interval's default.
const DefaultCheckpointInterval = 5 * time.Minute

// SetCheckpointInterval tells Verify how often the gateway signs while
// it runs (audit.checkpoint_interval).
func (t *Trail) SetCheckpointInterval(d time.Duration) { t.interval = d }

// maxUnsigned is the longest span of entries a genuine trail leaves
// after its newest checkpoint: the gateway signs at every start and
// stop, and at every interval while the head moves; twice that, and a
// minute for a slow disk, before Verify calls it deleted checkpoints.
//
// signed is the interval the newest checkpoint was signed under (0:
// unknown): the longer of it and the setting now counts.
func (t *Trail) maxUnsigned(signed time.Duration) time.Duration {
	return 2*max(t.checkpointInterval(), signed) + time.Minute
}

func (t *Trail) checkpointInterval() time.Duration {
	if t.interval <= 0 {
		return DefaultCheckpointInterval
	}
	return t.interval
}

// newestCheckpoint is the genuine checkpoint at seq (nil when there is
// none, the store cannot say, or it does not verify).
func (t *Trail) newestCheckpoint(seq uint64) (*Checkpoint, error) {
	a, ok := t.store.(interface {
		AuditCheckpoint(seq uint64) ([]byte, error)
	})
	if seq == 0 || !ok {
		return nil, nil
	}
	data, err := a.AuditCheckpoint(seq)
	if err != nil || data == nil {
		return nil, err
	}
	cp, problem := t.verifyCheckpoint(seq, data)
	if problem != "" {
		return nil, nil
	}
	return &cp, nil
}

// tailProblem judges the unsigned tail after the newest genuine
// checkpoint cp (nil: none), by the longer of the interval cp was signed
// under and today's setting. Not after a checkpoint that names no
// interval (v2) unless the tail says a later sealgate signed (tail.v3):
// the sealgate that made it signed neither at start nor after a command
// on a stopped spool, so a long tail is no sign of deletion there.
func (t *Trail) tailProblem(tail tailSpan, cp *Checkpoint) string {
	var signed time.Duration
	if cp != nil {
		if cp.Interval == 0 && !tail.v3 {
			return ""
		}
		signed = time.Duration(cp.Interval) * time.Second
	}
	return tail.problem(t.maxUnsigned(signed))
}

// New is the trail over store, signing with key (nil to verify only,
// with pub).
func New(store Storage, key ed25519.PrivateKey, pub ed25519.PublicKey) *Trail {
	if key != nil {
		pub = key.Public().(ed25519.PublicKey)
	}
	return &Trail{store: store, key: key, pub: pub}
}

// PublicKey is the key checkpoints are verified with.
func (t *Trail) PublicKey() ed25519.PublicKey { return t.pub }

// LoadKeyIfExists reads the signing key at path, nil when there is
// none (a node that never started has no trail to sign).
func LoadKeyIfExists(path string) (ed25519.PrivateKey, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return LoadOrCreateKey(path)
}

// LoadOrCreateKey reads the Ed25519 signing key of the audit trail
// (PKCS #8 PEM), creating it (0600) when the file does not exist.
func LoadOrCreateKey(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, err
		}
		if err := safeio.CreateFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, fmt.Errorf("audit signing key %s: %w", path, err)
		}
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit signing key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("audit signing key %s: no PEM PRIVATE KEY block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("audit signing key %s: %w", path, err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("audit signing key %s: %T, want Ed25519", path, k)
	}
	return key, nil
}

// Checkpoint signs the chain's head when it moved since the last
// checkpoint; it returns the checkpoint (nil when there was nothing new).
func (t *Trail) Checkpoint(now time.Time) (*Checkpoint, error) {
	if t.key == nil {
		return nil, errors.New("audit: no signing key")
	}
	seq, hash, err := t.store.AuditHead()
	if err != nil || seq == 0 {
		return nil, err
	}
	last, err := t.store.AuditLastCheckpoint()
	if err != nil {
		return nil, err
	}
	if last >= seq {
		return nil, nil
	}
	if cp, err := t.newestCheckpoint(last); err == nil && cp != nil && cp.Interval == 0 {
		// The first checkpoint after an older sealgate's (v2): the chain
		// says from here on that checkpoints name their interval, so that
		// deleting every one after the old checkpoint cannot make the
		// tail unjudged (tailProblem).
		rec := mustJSON(Record{Time: now.UTC(), Type: signerV3Type, Actor: "sealgate",
			Detail: "checkpoints from here on name their interval; a long unsigned tail after this entry means deleted checkpoints"})
		if err := t.store.Audit(rec); err != nil {
			return nil, err
		}
		if seq, hash, err = t.store.AuditHead(); err != nil {
			return nil, err
		}
	}
	cp := Checkpoint{Seq: seq, Hash: hash, Prev: last, Time: now.UTC(), Interval: int64(t.checkpointInterval() / time.Second), Key: hex.EncodeToString(t.pub)}
	cp.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(t.key, cp.signedBytes()))
	data, err := json.Marshal(cp)
	if err != nil {
		return nil, err
	}
	return &cp, t.store.PutAuditCheckpoint(seq, data)
}

// unsignedTailType is the record a signer leaves in the chain when it
// finds entries after the newest checkpoint spanning longer than a
// genuine trail leaves: signing over them must not hide that the
// checkpoints which covered them were deleted.
const unsignedTailType = "audit.unsigned-tail"

// signerV3Type is the record chained before the first checkpoint that
// names its interval, after checkpoints that did not.
const signerV3Type = "audit.signer-v3"

// SignHead is Checkpoint for a start, or for a command that changed a
// stopped server's spool: a tail no checkpoint covers that is longer
// than a genuine trail leaves is first put on record in the chain (and
// returned, for the log), then the head is signed.
//
// upTo bounds the tail judged (0: the head): a command signing after it
// wrote judges only what it found.
func (t *Trail) SignHead(now time.Time, upTo uint64) (*Checkpoint, string, error) {
	last, err := t.store.AuditLastCheckpoint()
	if err != nil {
		return nil, "", err
	}
	base, _, err := t.store.AuditBase()
	if err != nil {
		return nil, "", err
	}
	signed := max(last, base)
	var tail tailSpan
	err = t.store.ForEachAudit(signed+1, func(seq uint64, e *queue.AuditEntry, openErr error) error {
		if upTo > 0 && seq > upTo {
			return errStop
		}
		if openErr == nil && seq > signed {
			tail.add(seq, e.Record)
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, "", err
	}
	newest, err := t.newestCheckpoint(last)
	if err != nil {
		return nil, "", err
	}
	problem := t.tailProblem(tail, newest)
	if problem != "" {
		rec := mustJSON(Record{Time: now.UTC(), Type: unsignedTailType, Actor: "sealgate", Detail: problem})
		if err := t.store.Audit(rec); err != nil {
			return nil, problem, err
		}
	}
	cp, err := t.Checkpoint(now)
	return cp, problem, err
}

// tailSpan is the entries after the newest checkpoint, and their times.
type tailSpan struct {
	first, last uint64
	from, to    time.Time
	v3          bool // the tail holds the entry after which checkpoints name their interval
}

func (s *tailSpan) add(seq uint64, record []byte) {
	var r struct {
		Time time.Time `json:"time"`
		Type string    `json:"type"`
	}
	if json.Unmarshal(record, &r) != nil || r.Time.IsZero() {
		return
	}
	if r.Type == signerV3Type {
		s.v3 = true
	}
	if s.first == 0 {
		s.first, s.from = seq, r.Time
	}
	s.last, s.to = seq, r.Time
}

// problem names the span when it is longer than maxUnsigned.
func (s tailSpan) problem(maxUnsigned time.Duration) string {
	if s.first == 0 || s.to.Sub(s.from) <= maxUnsigned {
		return ""
	}
	return fmt.Sprintf("entries %d to %d (%s to %s) are covered by no signed checkpoint, though sealgate signs one at every start and stop and every %s while it runs (checkpoints deleted, or entries written by a sealgate that did not sign them)",
		s.first, s.last, s.from.UTC().Format(time.RFC3339), s.to.UTC().Format(time.RFC3339), ((maxUnsigned - time.Minute) / 2).String())
}

// verifyCheckpoint says what is wrong with a stored checkpoint, "" when
// it is genuine.
func (t *Trail) verifyCheckpoint(seq uint64, data []byte) (Checkpoint, string) {
	var cp Checkpoint
	if err := json.Unmarshal(data, &cp); err != nil {
		return cp, fmt.Sprintf("checkpoint at entry %d does not decode: %v", seq, err)
	}
	sig, err := base64.StdEncoding.DecodeString(cp.Signature)
	switch {
	case cp.Seq != seq:
		return cp, fmt.Sprintf("checkpoint stored at entry %d names entry %d (moved)", seq, cp.Seq)
	case err != nil || !ed25519.Verify(t.pub, cp.signedBytes(), sig):
		return cp, fmt.Sprintf("checkpoint at entry %d (%s): the signature does not verify with the audit key (forged or edited)", seq, cp.Time.Format(time.RFC3339))
	}
	return cp, ""
}

// Record appends records that belong to no message change (admin
// actions), chained like the rest.
func (t *Trail) Record(records ...[]byte) error { return t.store.Audit(records...) }
