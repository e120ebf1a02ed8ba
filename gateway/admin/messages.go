package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sealgate/sealgate/gateway/submit"
	"github.com/sealgate/sealgate/queue"
)

// The send API.
//
//	POST /api/v1/messages        one message: JSON (submit.JSONMessage) or raw (Content-Type: message/rfc822);
//	                             201 {"id"} once it is fsynced; 200 with the first ID for a repeated idempotency key
//	POST /api/v1/messages:batch  {"messages": [JSONMessage…]} (at most 500), each accepted or refused on its own
//	GET  /api/v1/messages/{id}   per-recipient status (a send key sees only what it sent)

// maxBatch bounds a batch.
const maxBatch = 500

// Submitter takes the send API's messages (submit.Intake).
type Submitter interface {
	Submit(ctx context.Context, sub submit.Submission) (submit.Result, error)
}

// SendLimits bound what one key may send.
type SendLimits struct {
	PerMinute int   // messages per minute per key without its own limit (0: no limit)
	MaxBytes  int64 // bytes per request body
}

// RateStore is a fleet's count of the messages each key sent
// (pgstore), so that a key's limit per minute holds across its nodes.
type RateStore interface {
	TakeRate(key string, n, limit int) (bool, time.Duration, error)
	GiveRate(key string, n int) error
}

// rateLimiter counts each key's messages in the last minute: in this
// node's memory, or in a fleet's shared store when one is set (this
// node's memory again while that does not answer).
type rateLimiter struct {
	mu     sync.Mutex
	sent   map[string][]time.Time
	shared RateStore
	logger *slog.Logger
}

// take reserves n messages for key at now under limit per minute; when
// it cannot, it says how long to wait.
func (l *rateLimiter) take(key string, n, limit int, now time.Time) (bool, time.Duration) {
	if limit <= 0 {
		return true, 0
	}
	if l.shared != nil {
		ok, wait, err := l.shared.TakeRate(key, n, limit)
		if err == nil {
			return ok, wait
		}
		l.logger.Warn("the fleet's send counts do not answer; this node counts alone", "err", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sent == nil {
		l.sent = map[string][]time.Time{}
	}
	ts := l.sent[key]
	i := 0
	for i < len(ts) && now.Sub(ts[i]) >= time.Minute {
		i++
	}
	ts = ts[i:]
	if len(ts)+n > limit {
		l.sent[key] = ts
		if len(ts) == 0 {
			return false, time.Minute
		}
		return false, ts[min(len(ts)-1, len(ts)+n-limit-1)].Add(time.Minute).Sub(now)
	}
	for range n {
		ts = append(ts, now)
	}
	l.sent[key] = ts
	return true, 0
}

// give hands back n messages key reserved at at, which queued nothing.
func (l *rateLimiter) give(key string, n int, at time.Time) {
	if l.shared != nil && n > 0 {
		if err := l.shared.GiveRate(key, n); err == nil {
			return
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	ts := l.sent[key]
	for i := len(ts) - 1; i >= 0 && n > 0; i-- {
		if ts[i].Equal(at) {
			ts = slices.Delete(ts, i, i+1)
			n--
		}
	}
	if l.sent != nil {
		l.sent[key] = ts
	}
}

// apiError is the one error shape of the API.
func apiError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func (a *API) messageRoutes(mux *routeMux) {
	if a.submit == nil {
		return
	}
	mux.HandleFunc("POST /api/v1/messages", a.sendMessage)
	mux.HandleFunc("POST /api/v1/messages:batch", a.sendBatch)
	mux.HandleFunc("GET /api/v1/messages/{id}", a.messageStatus)
}

func (a *API) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	limit := a.sendLimits.MaxBytes
	if limit <= 0 {
		limit = 64 << 20
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		apiError(w, http.StatusRequestEntityTooLarge, "the request body exceeds "+strconv.FormatInt(limit, 10)+" bytes")
		return nil, false
	}
	return body, true
}

// perMinute is how many messages a minute p may send: its key's own
// limit, else the node's.
func (a *API) perMinute(p Principal) int {
	if p.PerMinute > 0 {
		return p.PerMinute
	}
	return a.sendLimits.PerMinute
}

// rateKey is whose quota p's messages count against.
func rateKey(p Principal) string {
	if p.KeyID != "" {
		return p.KeyID
	}
	return p.Name
}

// limited reserves n messages of p's quota at now, or answers 429 and
// reports true.
func (a *API) limited(w http.ResponseWriter, p Principal, n int, now time.Time) bool {
	limit := a.perMinute(p)
	ok, wait := a.sendRate.take(rateKey(p), n, limit, now)
	if !ok {
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
		apiError(w, http.StatusTooManyRequests, "this key's limit of "+strconv.Itoa(limit)+" messages a minute is reached")
	}
	return !ok
}

func (a *API) sendMessage(w http.ResponseWriter, r *http.Request) {
	p := principalOf(r)
	body, ok := a.readBody(w, r)
	now := time.Now() // after the body: a slow upload is not counted in an older minute
	if !ok || a.limited(w, p, 1, now) {
		return
	}
	var sub submit.Submission
	var err error
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "message/rfc822" {
		sub, err = submit.ParseRaw(body, a.hostname, time.Now())
		sub.IdempotencyKey = r.Header.Get("Idempotency-Key")
	} else {
		var j submit.JSONMessage
		if err = json.Unmarshal(body, &j); err != nil {
			apiError(w, http.StatusBadRequest, "the body is not a JSON message: "+err.Error())
			return
		}
		sub, err = submit.Build(j, a.hostname, time.Now())
		if sub.IdempotencyKey == "" {
			sub.IdempotencyKey = r.Header.Get("Idempotency-Key")
		}
	}
	if err != nil {
		a.refused(w, err)
		return
	}
	res, status, err := a.submitOne(r, p, sub)
	if err != nil {
		a.refused(w, err)
		return
	}
	if note := noteOf(r); res.Duplicate {
		a.sendRate.give(rateKey(p), 1, now) // it queued nothing
		note.queueID, note.detail = res.ID, "a repeated idempotency key: nothing queued"
	} else {
		note.covered = true // by the message's "received" entry
	}
	writeJSON(w, status, res)
}

func (a *API) submitOne(r *http.Request, p Principal, sub submit.Submission) (submit.Result, int, error) {
	sub.Principal, sub.KeyID, sub.Domains, sub.Addresses, sub.ClientAddr = p.Name, p.KeyID, p.Domains, p.Addresses, r.RemoteAddr
	sub.MaxBytes = p.MaxBytes
	if sub.KeyID == "" {
		sub.KeyID = p.Name
	}
	res, err := a.submit.Submit(r.Context(), sub)
	if err != nil {
		return res, 0, err
	}
	if res.Duplicate {
		return res, http.StatusOK, nil
	}
	return res, http.StatusCreated, nil
}

// refused answers a message the intake refused with its status, or an
// internal error.
func (a *API) refused(w http.ResponseWriter, err error) {
	var rf *submit.Refused
	if errors.As(err, &rf) {
		apiError(w, rf.Status, rf.Msg)
		return
	}
	a.logger.Error("send API", "err", err)
	apiError(w, http.StatusServiceUnavailable, "the message could not be spooled; try again")
}

// batchResult is one message's answer in a batch.
type batchResult struct {
	Index  int    `json:"index"`
	Status int    `json:"status"`
	ID     string `json:"id,omitempty"`
	Error  string `json:"error,omitempty"`
}

func (a *API) sendBatch(w http.ResponseWriter, r *http.Request) {
	p := principalOf(r)
	body, ok := a.readBody(w, r)
	now := time.Now() // after the body: a slow upload is not counted in an older minute
	if !ok {
		return
	}
	var in struct {
		Messages []submit.JSONMessage `json:"messages"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		apiError(w, http.StatusBadRequest, "the body is not {\"messages\": […]}: "+err.Error())
		return
	}
	if len(in.Messages) == 0 || len(in.Messages) > maxBatch {
		apiError(w, http.StatusBadRequest, "a batch holds 1 to "+strconv.Itoa(maxBatch)+" messages")
		return
	}
	if m := a.perMinute(p); m > 0 && len(in.Messages) > m {
		apiError(w, http.StatusBadRequest, "a batch of "+strconv.Itoa(len(in.Messages))+" can never fit this key's limit of "+strconv.Itoa(m)+" messages a minute; split it")
		return
	}
	if a.limited(w, p, len(in.Messages), now) {
		return
	}
	out := make([]batchResult, len(in.Messages))
	for i, j := range in.Messages {
		out[i].Index = i
		sub, err := submit.Build(j, a.hostname, time.Now())
		var res submit.Result
		if err == nil {
			res, out[i].Status, err = a.submitOne(r, p, sub)
		}
		if err != nil {
			var rf *submit.Refused
			if errors.As(err, &rf) {
				out[i].Status, out[i].Error = rf.Status, rf.Msg
			} else {
				out[i].Status, out[i].Error = http.StatusServiceUnavailable, "could not be spooled; send it again"
			}
			continue
		}
		out[i].ID = res.ID
	}
	repeated := 0
	for _, res := range out {
		if res.Status == http.StatusOK {
			repeated++
		}
	}
	a.sendRate.give(rateKey(p), repeated, now) // they queued nothing
	note := noteOf(r)
	note.detail, note.covered = batchSummary(out)
	writeJSON(w, http.StatusOK, map[string]any{"results": out})
}

// batchSummary is what a batch's audit record says of its messages:
// how many were queued, repeated an idempotency key or were refused
// (by status). covered: every message was queued, so each has its
// "received" entry and the call needs no record of its own.
func batchSummary(results []batchResult) (detail string, covered bool) {
	var queued, repeated int
	refused := map[int]int{}
	for _, res := range results {
		switch res.Status {
		case http.StatusCreated:
			queued++
		case http.StatusOK:
			repeated++
		default:
			refused[res.Status]++
		}
	}
	if queued == len(results) {
		return "", true
	}
	detail = fmt.Sprintf("%d messages: %d queued, %d repeated idempotency keys, %d refused", len(results), queued, repeated, len(results)-queued-repeated)
	if len(refused) > 0 {
		var by []string
		for _, status := range slices.Sorted(maps.Keys(refused)) {
			by = append(by, fmt.Sprintf("%d×%d", refused[status], status))
		}
		detail += " (" + strings.Join(by, ", ") + ")"
	}
	return detail, false
}

// MessageStatus is GET /api/v1/messages/{id}: where each recipient
// stands.
type MessageStatus struct {
	ID         string            `json:"id"`
	MessageID  string            `json:"message_id,omitempty"`
	From       string            `json:"from"`
	Received   time.Time         `json:"received"`
	Held       bool              `json:"held"`
	Finished   bool              `json:"finished"`
	Recipients []RecipientStatus `json:"recipients"`
}

// RecipientStatus is one recipient's state.
type RecipientStatus struct {
	Address    string    `json:"address"`
	State      string    `json:"state"`
	Method     string    `json:"method"`
	Attempts   int       `json:"attempts"`
	Status     string    `json:"status,omitempty"`
	LastResult string    `json:"last_result,omitempty"`
	Next       time.Time `json:"next_attempt,omitzero"`
	Done       time.Time `json:"done,omitzero"`
}

func (a *API) messageStatus(w http.ResponseWriter, r *http.Request) {
	p := principalOf(r)
	m, err := a.store.Get(r.PathValue("id"))
	if err == nil && p.Scope == ScopeSend && m.Envelope.AuthUser != p.Name {
		err = queue.ErrNotFound // a send key sees only its own messages
	}
	if err != nil {
		a.fail(w, err)
		return
	}
	st := MessageStatus{ID: m.ID, MessageID: m.Envelope.MessageID, From: m.Envelope.From, Received: m.Received, Held: m.Held, Finished: !m.DoneAt.IsZero()}
	for _, rc := range m.Recipients {
		st.Recipients = append(st.Recipients, RecipientStatus{Address: rc.Address, State: string(rc.State), Method: rc.Method(),
			Attempts: rc.Attempts, Status: rc.Status, LastResult: rc.LastError, Next: rc.NextAttempt, Done: rc.DoneAt})
	}
	writeJSON(w, http.StatusOK, st)
}
