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
	Prev      uint64    `json:"prev"`
	Time      time.Time `json:"time"`
	Key       string    `json:"key"`
	Signature string    `json:"signature"` // base64 Ed25519 over signedBytes
}

func (c Checkpoint) signedBytes() []byte {
	return []byte("sealgate audit checkpoint v2\n" + strconv.FormatUint(c.Seq, 10) + "\n" + c.Hash + "\n" +
		strconv.FormatUint(c.Prev, 10) + "\n" + c.Time.UTC().Format(time.RFC3339Nano) + "\n")
}

// Trail signs checkpoints and reads the chain of a Storage.
type Trail struct {
	shipMu sync.Mutex // one shipping at a time (fleet.go)
	store  Storage
	key    ed25519.PrivateKey // nil: can verify only
	pub    ed25519.PublicKey
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
	cp := Checkpoint{Seq: seq, Hash: hash, Prev: last, Time: now.UTC(), Key: hex.EncodeToString(t.pub)}
	cp.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(t.key, cp.signedBytes()))
	data, err := json.Marshal(cp)
	if err != nil {
		return nil, err
	}
	return &cp, t.store.PutAuditCheckpoint(seq, data)
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
