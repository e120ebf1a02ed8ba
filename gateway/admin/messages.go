package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

// RateStore is where a fleet's nodes publish their counts of the
// messages each key sent in the last minute (pgstore), so that a key's
// limit per minute holds across them.
type RateStore interface {
	// SyncRates publishes node's counts (a key at 0 is withdrawn) and
	// returns the other nodes' latest, summed per key.
	SyncRates(node string, mine map[string]int) (map[string]int, error)
}

// rateLimiter counts each key's messages in the last minute, exactly for
// this node; in a fleet it adds what the other nodes last published
// (SyncRates, every second), so the limit holds across them within a
// second's traffic, with no database round trip per message.
type rateLimiter struct {
	mu       sync.Mutex
	sent     map[string][]time.Time
	others   map[string]int // the other nodes' counts, as of the last sync
	othersAt time.Time      // when they were read
}

// othersFresh is how long the other nodes' counts are used after the
// last sync: they speak of the minute before it; a node that cannot
// reach the fleet's store then counts alone.
const othersFresh = time.Minute

// inWindow drops key's stamps older than a minute at now; l.mu held.
func (l *rateLimiter) inWindow(key string, now time.Time) []time.Time {
	ts := l.sent[key]
	i := 0
	for i < len(ts) && now.Sub(ts[i]) >= time.Minute {
		i++
	}
	ts = ts[i:]
	if len(ts) == 0 {
		delete(l.sent, key)
	} else {
		l.sent[key] = ts
	}
	return ts
}

// take reserves n messages for key at now under limit per minute; when
// it cannot, it says how long to wait.
func (l *rateLimiter) take(key string, n, limit int, now time.Time) (bool, time.Duration) {
	if limit <= 0 {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sent == nil {
		l.sent = map[string][]time.Time{}
	}
	ts := l.inWindow(key, now)
	others := 0
	if now.Sub(l.othersAt) < othersFresh {
		others = l.others[key]
	}
	if others+len(ts)+n > limit {
		if over := others + len(ts) + n - limit; len(ts) > 0 && over <= len(ts) {
			return false, ts[over-1].Add(time.Minute).Sub(now) // when enough of ours leave the window
		}
		return false, time.Minute
	}
	for range n {
		ts = append(ts, now)
	}
	l.sent[key] = ts
	return true, 0
}

// give hands back n messages key reserved at at, which queued nothing.
func (l *rateLimiter) give(key string, n int, at time.Time) {
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

// counts is this node's count per key in the minute before now, keys
// that fell to 0 since the last call included (so that they are
// withdrawn), for SyncRates.
func (l *rateLimiter) counts(now time.Time, published map[string]bool) map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	mine := map[string]int{}
	for key := range published {
		mine[key] = 0
	}
	for key := range l.sent {
		if n := len(l.inWindow(key, now)); n > 0 {
			mine[key] = n
		}
	}
	return mine
}

func (l *rateLimiter) setOthers(others map[string]int, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.others, l.othersAt = others, at
}

// SyncRates publishes this node's send counts to the fleet's store and
// takes the other nodes' (the gateway calls it every second on a
// fleet's node). While the store does not answer, the last counts are
// used for a minute, and then this node counts alone.
func (a *API) SyncRates(now time.Time) error {
	if a.rates == nil {
		return nil
	}
	mine := a.sendRate.counts(now, a.ratesPublished)
	others, err := a.rates.SyncRates(a.node, mine)
	if err != nil {
		return err
	}
	a.sendRate.setOthers(others, now)
	a.ratesPublished = map[string]bool{}
	for key, n := range mine {
		if n > 0 {
			a.ratesPublished[key] = true
		}
	}
	return nil
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
