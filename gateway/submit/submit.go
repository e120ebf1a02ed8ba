// Package submit is the send API's intake: a message handed over HTTPS
// (an EHR's appointment reminder, a lab result) goes through what an
// SMTP session does with one — canonical addresses, the same policy
// (tags, rules, escalation), a Received header naming who sent it, the
// spool commit with its fsync — and then the same scheduler, DKIM,
// encryption or escrow per recipient. It builds messages from JSON with
// go-message; it never speaks SMTP.
package submit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sealgate/sealgate/internal/mailtext"
	"github.com/sealgate/sealgate/policy"
	"github.com/sealgate/sealgate/queue"
)

// Spooler is where accepted messages go (queue.Store).
type Spooler interface {
	Enqueue(ctx context.Context, env queue.Envelope, body []byte) (string, error)
}

// Options configure the intake.
type Options struct {
	Spool    Spooler
	Policy   func() *policy.Engine // nil or nil engine: the default chain
	Hostname string
	// MaxMessageBytes bounds a message (inbound.max_message_bytes).
	MaxMessageBytes int64
	MaxRecipients   int
	OnQueued        func(id string)
	OnAccepted      func(env queue.Envelope)
	Now             func() time.Time
}

// Intake takes messages from the send API.
type Intake struct {
	o      Options
	limits atomic.Pointer[limits] // changed by a reload
}

type limits struct {
	maxBytes int64
	maxRcpts int
}

// New returns the intake.
func New(o Options) *Intake {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.OnQueued == nil {
		o.OnQueued = func(string) {}
	}
	in := &Intake{o: o}
	in.SetLimits(o.MaxMessageBytes, o.MaxRecipients)
	return in
}

// SetLimits puts new message limits in force (inbound.max_message_bytes
// and max_recipients, on SIGHUP) for the next submissions.
func (in *Intake) SetLimits(maxBytes int64, maxRcpts int) {
	in.limits.Store(&limits{maxBytes: maxBytes, maxRcpts: maxRcpts})
}

// Refused is a message the intake will not take: Status is the HTTP
// status (400 malformed, 403 a sender the key may not use, 413 too large,
// 422 refused by policy), Msg says why.
type Refused struct {
	Status int
	Msg    string
}

func (r *Refused) Error() string { return r.Msg }

func refuse(status int, format string, args ...any) error {
	return &Refused{Status: status, Msg: fmt.Sprintf(format, args...)}
}

// Submission is one message and who hands it over.
type Submission struct {
	From       string
	Recipients []string
	Message    []byte // RFC 5322, CRLF line ends, Bcc removed
	// Principal names the API credential (for Received, the record and
	// the audit trail); KeyID keys idempotency.
	Principal, KeyID string
	// Domains are the sender domains the key may use (nil: any), and
	// Addresses, when set, the only senders (a user's own address).
	Domains   []string
	Addresses []string
	// MaxBytes is the key's own limit of bytes a message (0: the
	// node's); it can lower the node's limit, not raise it.
	MaxBytes int64
	// Secure asks for the escalation chain, as a [secure] tag does.
	Secure bool
	// IdempotencyKey queues the message once per key and credential.
	IdempotencyKey string
	ClientAddr     string
}

// Result is what Submit did.
type Result struct {
	ID        string `json:"id"`
	Duplicate bool   `json:"duplicate,omitempty"` // an earlier request with the same idempotency key queued it
	Held      string `json:"held,omitempty"`
}

// Submit checks sub and spools it; the ID comes back only once the
// record and body are fsynced.
func (in *Intake) Submit(ctx context.Context, sub Submission) (Result, error) {
	from, fromDomain, err := mailtext.CanonicalAddress(sub.From)
	if err != nil || from == "" {
		return Result{}, refuse(400, "from %q is not a mail address: %v", sub.From, err)
	}
	if !domainAllowed(fromDomain, sub.Domains) {
		return Result{}, refuse(403, "this key may not send for %s (it may for %s)", fromDomain, strings.Join(sub.Domains, ", "))
	}
	if sub.Addresses != nil && !slices.ContainsFunc(sub.Addresses, func(a string) bool { return sameUser(from, a) }) {
		return Result{}, refuse(403, "this token may send only as %s", strings.Join(sub.Addresses, ", "))
	}
	if len(sub.Recipients) == 0 {
		return Result{}, refuse(400, "no recipients")
	}
	lim := in.limits.Load()
	if m := lim.maxRcpts; m > 0 && len(sub.Recipients) > m {
		return Result{}, refuse(400, "%d recipients; at most %d per message", len(sub.Recipients), m)
	}
	var rcpts []string
	seen := map[string]bool{}
	for _, r := range sub.Recipients {
		addr, domain, err := mailtext.CanonicalAddress(r)
		if err != nil || addr == "" || strings.HasPrefix(domain, "[") {
			return Result{}, refuse(400, "recipient %q is not a mail address", r)
		}
		if !seen[addr] {
			seen[addr] = true
			rcpts = append(rcpts, addr)
		}
	}
	msg := mailtext.NormalizeLineEndings(sub.Message)
	limit, whose := lim.maxBytes, "the limit"
	if k := sub.MaxBytes; k > 0 && (limit <= 0 || k < limit) {
		limit, whose = k, "this key's limit"
	}
	if limit > 0 && int64(len(msg)) > limit {
		return Result{}, refuse(413, "message of %d octets exceeds %s of %d", len(msg), whose, limit)
	}
	if bytes.IndexByte(msg, 0) >= 0 {
		return Result{}, refuse(400, "the message contains NUL")
	}
	if sub.Secure {
		msg = append([]byte("X-Sealgate-Escalate: encrypt\r\n"), msg...)
	}
	id := queue.NewID(in.o.Now())
	env := queue.Envelope{ID: id, From: from, Recipients: rcpts, ClientAddr: sub.ClientAddr, ClientHelo: "send API",
		AuthUser: sub.Principal, TLS: "HTTPS", MessageID: messageID(msg)}
	if sub.IdempotencyKey != "" {
		sum := sha256.Sum256([]byte(sub.KeyID + "\x00" + sub.IdempotencyKey))
		env.IdempotencyKey = "api:" + hex.EncodeToString(sum[:])
	}
	if in.o.Policy != nil {
		if engine := in.o.Policy(); engine != nil {
			res, out := policy.Apply(engine, policy.Session{From: from, Recipients: rcpts, AuthUser: sub.Principal, Trusted: true}, msg)
			if res.Reject != "" {
				return Result{}, refuse(422, "refused by policy rule %s: %s", res.RejectRule, res.Reject)
			}
			msg = out
			env.Hold, env.Receipt = res.Hold, res.Receipt
			env.Asked = &queue.Asked{Tags: res.Tags, SubjectUnread: res.SubjectUnread, Escalation: res.Escalation, Trusted: true}
			for _, rd := range res.Recipients {
				env.Decisions = append(env.Decisions, queue.RcptDecision{Chain: rd.Chain.Strings(), Rules: rd.Rules, Reasons: rd.Reasons, By: rd.By})
			}
		}
	}
	// The trace names the channel, not the credential: a key's ID and
	// name are the sender's business (the spool record and the audit
	// trail keep them), not every recipient's.
	trace := fmt.Sprintf("Received: from send-api by %s (sealgate) with HTTPS id %s;\r\n\t%s\r\n",
		in.o.Hostname, id, in.o.Now().Format(time.RFC1123Z))
	body := append([]byte(trace), msg...)
	got, err := in.o.Spool.Enqueue(ctx, env, body)
	if errors.Is(err, queue.ErrDuplicate) {
		return Result{ID: got, Duplicate: true}, nil
	}
	if err != nil {
		return Result{}, err
	}
	in.o.OnQueued(got)
	if in.o.OnAccepted != nil {
		in.o.OnAccepted(env)
	}
	return Result{ID: got, Held: env.Hold}, nil
}

// sameUser says whether the canonical sender from is the address of
// one of our own users, written as the user's name is: both in canonical
// form, the local part without regard to case (Alice@Org.TEST sending as
// alice@org.test is the same user).
//
// Only ASCII letters are folded: Unicode folding would take a KELVIN
// SIGN for a K or a long s for an s, other mailboxes that look alike.
func sameUser(from, user string) bool {
	u, _, err := mailtext.CanonicalAddress(user)
	return err == nil && u != "" && len(from) == len(u) && asciiLower(from) == asciiLower(u)
}

// asciiLower lowers the ASCII letters of s and leaves every other byte.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func domainAllowed(domain string, allowed []string) bool {
	if allowed == nil {
		return true
	}
	for _, d := range allowed {
		d = strings.ToLower(strings.TrimSuffix(d, "."))
		if domain == d || strings.HasSuffix(domain, "."+d) {
			return true
		}
	}
	return false
}

func messageID(msg []byte) string {
	end := bytes.Index(msg, []byte("\r\n\r\n"))
	if end < 0 {
		end = len(msg)
	}
	m, err := mail.ReadMessage(bytes.NewReader(append(append([]byte{}, msg[:end]...), "\r\n\r\n"...)))
	if err != nil {
		return ""
	}
	id := mailtext.OneLine(strings.TrimSpace(m.Header.Get("Message-Id")))
	if len(id) > 998 {
		id = id[:998]
	}
	return id
}
