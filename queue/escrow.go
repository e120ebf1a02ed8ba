package queue

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The escrow store.
//
// An escrowed message is the original message kept for its recipients
// to read in the portal instead of being sent to them. It lives in the
// spool file, in buckets of its own, under a key of its own:
//
//   - each message is sealed (AES-256-GCM) with a fresh random key of
//     its own; that key is kept wrapped by the escrow master key
//     (escrow.key_file), so destroying one message (expiry, revocation)
//     is forgetting 32 bytes, and the spool key alone opens nothing;
//   - the message record (sender, dates, state, the wrapped key) and one
//     access record per recipient (address, code state, events) are
//     sealed under the master key;
//   - a recipient's link holds a random token (256 bits); the store
//     keeps only its SHA-256, as the key of the token index, never the
//     token: whoever reads the file cannot rebuild a link;
//   - the master key is proven by a sealed key-check record: a missing
//     key for a store that holds messages is ErrEscrowKeyMissing, a key
//     that is not this store's is ErrEscrowKeyWrong, and a new key is
//     created only while the store is empty.
//
// Escrow is its own key and its own buckets so that a shared store
// (DESIGN.md, "Where it is going") can take it over behind the same
// methods without the spool.

// Errors callers branch on.
var (
	// ErrEscrowGone: no escrowed message for that token or ID, or it
	// has expired or been revoked. The portal shows the same page for
	// all of these (no oracle); Detail-free on purpose.
	ErrEscrowGone = errors.New("queue: escrowed message not available")
	// ErrEscrowKeyMissing: the escrow key file does not exist, but the
	// store holds escrowed messages sealed with it.
	ErrEscrowKeyMissing = errors.New("queue: escrow key missing")
	// ErrEscrowKeyWrong: the escrow key does not open this store.
	ErrEscrowKeyWrong = errors.New("queue: escrow key does not match the escrow store")
)

var (
	bucketEscrowMeta    = []byte("escrow-meta")
	bucketEscrowMsgs    = []byte("escrow-messages")
	bucketEscrowRcpts   = []byte("escrow-recipients")
	bucketEscrowTokens  = []byte("escrow-tokens")  // SHA-256(token) → recipient ID
	bucketEscrowQueue   = []byte("escrow-queue")   // queue ID → escrow message ID
	bucketEscrowContent = []byte("escrow-content") // sealed with the message's own key
)

const (
	kindEscrowMsg     = "escrow-message"
	kindEscrowRcpt    = "escrow-recipient"
	kindEscrowKey     = "escrow-message-key"
	kindEscrowContent = "escrow-content"
	escrowCheckPlain  = "sealgate escrow key check v1"
)

// Escrow event kinds, in the order a recipient meets them.
const (
	EscrowLinkIssued   = "link issued"
	EscrowNoticeSent   = "notice sent"
	EscrowCodeSent     = "code sent"
	EscrowCodeFailed   = "code failed"
	EscrowLocked       = "locked"
	EscrowOpened       = "opened"
	EscrowDownloaded   = "attachment downloaded"
	EscrowReplied      = "replied"
	EscrowRevoked      = "revoked"
	EscrowExpired      = "expired"
	EscrowNoticeFailed = "notice failed"
)

// EscrowEvent is one entry of a recipient's access log.
type EscrowEvent struct {
	Time   time.Time `json:"time"`
	Kind   string    `json:"kind"`
	Client string    `json:"client,omitempty"` // client address, "" for the gateway itself
	Detail string    `json:"detail,omitempty"`
}

// EscrowMessage is the record of one escrowed message (never its
// content).
type EscrowMessage struct {
	ID           string    `json:"id"`
	QueueID      string    `json:"queue_id"`
	EnvelopeFrom string    `json:"envelope_from"`
	Sender       string    `json:"sender"` // the From header, decoded
	Created      time.Time `json:"created"`
	Expires      time.Time `json:"expires"`
	Revoked      time.Time `json:"revoked,omitzero"`
	RevokedBy    string    `json:"revoked_by,omitempty"`
	// Destroyed is when the content and its key were removed (expiry
	// or revocation).
	Destroyed  time.Time `json:"destroyed,omitzero"`
	WrappedKey []byte    `json:"wrapped_key,omitempty"`
	Recipients []string  `json:"recipients"` // access record IDs
	// The sender's link (escrowsender.go): its hash, and the sender's
	// one-time code.
	SenderTokenHash string      `json:"sender_token_hash,omitempty"`
	SenderCode      *EscrowCode `json:"sender_code,omitempty"`
	SenderCodesSent []time.Time `json:"sender_codes_sent,omitempty"`
}

// State is "active", "revoked" or "expired" at now.
func (m *EscrowMessage) State(now time.Time) string {
	switch {
	case !m.Revoked.IsZero():
		return "revoked"
	case !m.Destroyed.IsZero() || !now.Before(m.Expires):
		return "expired"
	}
	return "active"
}

// EscrowRecipient is one recipient's access record.
type EscrowRecipient struct {
	ID          string        `json:"id"` // <message ID>.<n>
	MessageID   string        `json:"message_id"`
	Address     string        `json:"address"`
	TokenHashes []string      `json:"token_hashes"`
	Code        *EscrowCode   `json:"code,omitempty"`
	CodesSent   []time.Time   `json:"codes_sent,omitempty"` // the last hour's, for the rate limit
	Opened      time.Time     `json:"opened,omitzero"`
	Events      []EscrowEvent `json:"events"`
	// AuditedEvents is how many of Events are in the audit log.
	AuditedEvents int `json:"audited_events,omitempty"`
}

// EscrowCode is the one-time code a recipient was last sent.
type EscrowCode struct {
	Salt    []byte    `json:"salt"`
	Hash    []byte    `json:"hash"`
	Expires time.Time `json:"expires"`
	Tries   int       `json:"tries"` // wrong tries so far
}

// EscrowEntry is a recipient's access record with its message, for
// listing.
type EscrowEntry struct {
	Message   EscrowMessage
	Recipient EscrowRecipient
}

// EscrowOptions configure OpenEscrow; zero values take the defaults.
type EscrowOptions struct {
	KeyFile string        // the master key, created 0600 while the store is empty
	Expiry  time.Duration // content is destroyed this long after deposit (30 days)
	// CodeTTL, CodeTries, CodesPerHour: a code is valid CodeTTL (10m),
	// voided after CodeTries wrong tries (5); at most CodesPerHour (5)
	// codes are sent per recipient in an hour.
	CodeTTL      time.Duration
	CodeTries    int
	CodesPerHour int
	Now          func() time.Time
	// Objects, when set, keeps each message's sealed content in an
	// object store (escrow.object_store) instead of the escrow's buckets,
	// which then hold a reference.
	Objects ObjectStore
}

// ObjectStore keeps escrowed contents, already sealed, by name
// (internal/objectstore implements it for S3-compatible stores).
// GetObject of a name that is not there returns an error.
type ObjectStore interface {
	PutObject(ctx context.Context, name string, data []byte) error
	GetObject(ctx context.Context, name string) ([]byte, error)
	DeleteObject(ctx context.Context, name string) error
}

// objectRef marks a content record whose sealed bytes are in the
// object store, under the message's ID (sealed content starts with a
// random nonce; this prefix is not one it makes in practice).
var objectRef = []byte("\x00SGOBJ1\x00")

// objectTimeout bounds one object store request.
const objectTimeout = 2 * time.Minute

// Escrow is the escrow store in a spool. Safe for concurrent use.
type Escrow struct {
	s      *Store
	shared SharedKV // a fleet's shared store; nil: the spool's own buckets
	seal   *sealer
	opts   EscrowOptions
	now    func() time.Time
}

// escrowBuckets are the escrow store's buckets in the spool.
var escrowBuckets = [][]byte{bucketEscrowMeta, bucketEscrowMsgs, bucketEscrowRcpts, bucketEscrowTokens, bucketEscrowQueue,
	bucketEscrowContent, bucketEscrowSenderTokens}

// OpenEscrow unlocks the escrow store of s with the master key in
// o.KeyFile (see the file comment for the key rules).
func (s *Store) OpenEscrow(o EscrowOptions) (*Escrow, error) {
	if o.Expiry <= 0 {
		o.Expiry = 30 * 24 * time.Hour
	}
	if o.CodeTTL <= 0 {
		o.CodeTTL = 10 * time.Minute
	}
	if o.CodeTries <= 0 {
		o.CodeTries = 5
	}
	if o.CodesPerHour <= 0 {
		o.CodesPerHour = 5
	}
	if o.Now == nil {
		o.Now = s.now
	}
	e := &Escrow{s: s, opts: o, now: o.Now}
	if sh, ok := s.shared.(SharedKV); ok {
		e.shared = sh // a fleet's: every node opens the same messages
	} else {
		err := s.commit(context.Background(), 0, func(tx *bolt.Tx) error {
			for _, b := range escrowBuckets {
				if _, err := tx.CreateBucketIfNotExists(b); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("escrow store: %w", err)
		}
	}
	var check []byte
	empty := true
	err := e.view(func(tx escrowTx) error {
		if v := tx.Bucket(bucketEscrowMeta).Get(keyCheckName); v != nil {
			check = append([]byte(nil), v...)
		}
		k, _ := tx.Bucket(bucketEscrowMsgs).Cursor().First()
		empty = k == nil
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("escrow store: %w", err)
	}
	key, err := readKeyNamed("escrow key", o.KeyFile)
	switch {
	case errors.Is(err, fs.ErrNotExist) && (!empty || check != nil):
		return nil, fmt.Errorf("%w: %s does not exist, but the escrow store holds messages sealed with it; restore the key file from backup (in a fleet: copy it from a node of the fleet)", ErrEscrowKeyMissing, o.KeyFile)
	case errors.Is(err, fs.ErrNotExist):
		if key, err = createKeyNamed("escrow key", o.KeyFile); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, err
	}
	sl, err := newSealer(key)
	if err != nil {
		return nil, fmt.Errorf("escrow key %s: %w", o.KeyFile, err)
	}
	// The key check is written once, by the first node to get here; a
	// node that comes second with another key finds it and is refused.
	wrong := false
	err = e.update(0, func(tx escrowTx) error {
		meta := tx.Bucket(bucketEscrowMeta)
		if v := meta.Get(keyCheckName); v != nil {
			plain, err := sl.open(kindMeta, string(keyCheckName), v)
			wrong = err != nil || string(plain) != escrowCheckPlain
			return nil
		}
		wrong = false
		return meta.Put(keyCheckName, sl.seal(kindMeta, string(keyCheckName), []byte(escrowCheckPlain)))
	})
	if err != nil {
		return nil, fmt.Errorf("escrow store: %w", err)
	}
	if wrong {
		return nil, fmt.Errorf("%w: %s is not the key of this escrow store; point escrow.key_file at the right key", ErrEscrowKeyWrong, o.KeyFile)
	}
	e.seal = sl
	return e, nil
}

// Expiry is how long a deposit stays readable.
func (e *Escrow) Expiry() time.Duration { return e.opts.Expiry }

// EscrowDeposit describes a message handed to escrow.
type EscrowDeposit struct {
	QueueID      string
	EnvelopeFrom string
	Sender       string // the From header, for list and show
	Recipient    string
	Client       string // "" for the gateway itself
}

// NewEscrowToken returns a fresh link token: 256 random bits, URL-safe.
func NewEscrowToken() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// tokenHash is how a token is kept: its SHA-256, hex.
func tokenHash(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// Deposit escrows body for d.Recipient and returns the recipient's
// access record ID and a new token for the link. The message of
// d.QueueID is stored once whatever the number of its recipients; a
// second deposit for the same recipient (a notice sent again) adds a
// token and keeps the earlier ones valid.
func (e *Escrow) Deposit(d EscrowDeposit, body []byte) (rcptID, token string, err error) {
	now := e.now()
	token = NewEscrowToken()
	hash := tokenHash(token)
	newMsgID := newID(now)
	msgKey := make([]byte, keySize)
	rand.Read(msgKey)
	// With an object store the content goes there before the
	// transaction (which must not wait for it), when the queue ID has no
	// message yet; if one appeared meanwhile the upload is dropped after.
	uploaded := false
	if o := e.opts.Objects; o != nil {
		exists := false
		if err := e.view(func(tx escrowTx) error {
			exists = tx.Bucket(bucketEscrowQueue).Get([]byte(d.QueueID)) != nil
			return nil
		}); err != nil {
			return "", "", err
		}
		if !exists {
			content, err := sealWith(msgKey, kindEscrowContent, newMsgID, body)
			if err != nil {
				return "", "", err
			}
			ctx, cancel := context.WithTimeout(context.Background(), objectTimeout)
			err = o.PutObject(ctx, newMsgID, content)
			cancel()
			if err != nil {
				return "", "", fmt.Errorf("escrow object store: %w", err)
			}
			uploaded = true
		}
	}
	usedUpload := false
	defer func() {
		// An upload no committed record names goes; one that a record
		// may name (the commit's outcome unknown) stays: an orphaned
		// object is better than a message without its content.
		if uploaded && (!usedUpload || err != nil && !committedMaybe(err)) {
			ctx, cancel := context.WithTimeout(context.Background(), objectTimeout)
			e.opts.Objects.DeleteObject(ctx, newMsgID)
			cancel()
		}
	}()
	err = e.update(len(body), func(tx escrowTx) error {
		usedUpload = false
		msgs := tx.Bucket(bucketEscrowMsgs)
		var m *EscrowMessage
		if id := tx.Bucket(bucketEscrowQueue).Get([]byte(d.QueueID)); id != nil {
			var err error
			if m, err = e.getMessage(tx, string(id)); err != nil {
				return err
			}
			if m.State(now) != "active" {
				return ErrEscrowGone
			}
		} else {
			m = &EscrowMessage{ID: newMsgID, QueueID: d.QueueID, EnvelopeFrom: d.EnvelopeFrom, Sender: d.Sender,
				Created: now, Expires: now.Add(e.opts.Expiry),
				WrappedKey: e.seal.seal(kindEscrowKey, newMsgID, msgKey)}
			var content []byte
			if uploaded {
				content, usedUpload = objectRef, true // in the object store already
			} else {
				var err error
				if content, err = sealWith(msgKey, kindEscrowContent, m.ID, body); err != nil {
					return err
				}
			}
			if err := tx.Bucket(bucketEscrowContent).Put([]byte(m.ID), content); err != nil {
				return err
			}
			if err := tx.Bucket(bucketEscrowQueue).Put([]byte(d.QueueID), []byte(m.ID)); err != nil {
				return err
			}
		}
		var r *EscrowRecipient
		for _, id := range m.Recipients {
			got, err := e.getRecipient(tx, id)
			if err != nil {
				return err
			}
			if got.Address == d.Recipient {
				r = got
			}
		}
		if r == nil {
			r = &EscrowRecipient{ID: fmt.Sprintf("%s.%d", m.ID, len(m.Recipients)+1), MessageID: m.ID, Address: d.Recipient}
			m.Recipients = append(m.Recipients, r.ID)
		}
		r.TokenHashes = append(r.TokenHashes, hash)
		r.Events = append(r.Events, EscrowEvent{Time: now, Kind: EscrowLinkIssued, Client: d.Client,
			Detail: fmt.Sprintf("link %d for a notice (queue ID %s)", len(r.TokenHashes), d.QueueID)})
		rcptID = r.ID
		if err := tx.Bucket(bucketEscrowTokens).Put([]byte(hash), []byte(r.ID)); err != nil {
			return err
		}
		if err := e.putRecipient(tx, r); err != nil {
			return err
		}
		return e.putMessage(tx, msgs, m)
	})
	if err != nil {
		return "", "", err
	}
	return rcptID, token, nil
}

// Lookup returns the records behind a token. An unknown token, and one
// whose message has expired or was revoked, are ErrEscrowGone alike.
func (e *Escrow) Lookup(token string) (*EscrowEntry, error) {
	var out *EscrowEntry
	err := e.view(func(tx escrowTx) error {
		r, m, err := e.byToken(tx, token)
		if err != nil {
			return err
		}
		if m.State(e.now()) != "active" {
			return ErrEscrowGone
		}
		out = &EscrowEntry{Message: *m, Recipient: *r}
		return nil
	})
	return out, err
}

// Content returns the escrowed message of an active token.
func (e *Escrow) Content(token string) ([]byte, error) {
	var body []byte
	var inStore string // the message whose content is in the object store
	var sl *sealer
	err := e.view(func(tx escrowTx) error {
		_, m, err := e.byToken(tx, token)
		if err != nil {
			return err
		}
		if m.State(e.now()) != "active" {
			return ErrEscrowGone
		}
		key, err := e.seal.open(kindEscrowKey, m.ID, m.WrappedKey)
		if err != nil {
			return fmt.Errorf("%w: escrow message key %s: %v", errCorrupt, m.ID, err)
		}
		if sl, err = newSealer(key); err != nil {
			return err
		}
		sealed := tx.Bucket(bucketEscrowContent).Get([]byte(m.ID))
		if sealed == nil {
			return ErrEscrowGone
		}
		if bytes.Equal(sealed, objectRef) {
			inStore = m.ID // fetched below, outside the transaction
			return nil
		}
		if body, err = sl.open(kindEscrowContent, m.ID, sealed); err != nil {
			return fmt.Errorf("%w: escrow content %s: %v", errCorrupt, m.ID, err)
		}
		return nil
	})
	if err != nil || inStore == "" {
		return body, err
	}
	if e.opts.Objects == nil {
		return nil, fmt.Errorf("escrow content %s is in an object store, and escrow.object_store is not configured", inStore)
	}
	ctx, cancel := context.WithTimeout(context.Background(), objectTimeout)
	defer cancel()
	sealed, err := e.opts.Objects.GetObject(ctx, inStore)
	if err != nil {
		return nil, fmt.Errorf("escrow object store: %w", err)
	}
	if body, err = sl.open(kindEscrowContent, inStore, sealed); err != nil {
		return nil, fmt.Errorf("%w: escrow content %s: %v", errCorrupt, inStore, err)
	}
	return body, nil
}

// updateByToken runs fn on the records of an active token and stores
// the recipient record as fn leaves it, whatever fn returns: a wrong
// code must count even though the caller gets an error. fn may run more
// than once (see commit) and must only change r.
func (e *Escrow) updateByToken(token string, fn func(r *EscrowRecipient, m *EscrowMessage, now time.Time) error) error {
	var result error
	err := e.update(0, func(tx escrowTx) error {
		r, m, err := e.byToken(tx, token)
		if err != nil {
			return err
		}
		now := e.now()
		if m.State(now) != "active" {
			return ErrEscrowGone
		}
		result = fn(r, m, now)
		return e.putRecipient(tx, r)
	})
	if err != nil {
		return err
	}
	return result
}

// Record adds an event to the access log of a token's recipient.
func (e *Escrow) Record(token, kind, client, detail string) error {
	return e.updateByToken(token, func(r *EscrowRecipient, _ *EscrowMessage, now time.Time) error {
		r.Events = append(r.Events, EscrowEvent{Time: now, Kind: kind, Client: client, Detail: detail})
		return nil
	})
}

// RecordFor adds an event to the access log of a recipient by its
// access record ID, whatever the message's state (the notice's fate is
// logged even if the message was revoked meanwhile).
func (e *Escrow) RecordFor(rcptID, kind, client, detail string) error {
	return e.update(0, func(tx escrowTx) error {
		r, err := e.getRecipient(tx, rcptID)
		if err != nil {
			return err
		}
		r.Events = append(r.Events, EscrowEvent{Time: e.now(), Kind: kind, Client: client, Detail: detail})
		return e.putRecipient(tx, r)
	})
}

// SessionKey is the key the portal signs its session cookies with,
// derived from the escrow master key: every node that holds the key (a
// fleet's nodes all do) accepts the sessions of the others, and it
// survives a restart.
func (e *Escrow) SessionKey() []byte {
	m := hmac.New(sha256.New, e.seal.indexSecret)
	m.Write([]byte("sealgate portal session key v1"))
	return m.Sum(nil)
}
