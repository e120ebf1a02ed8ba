package report

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/queue"
)

// Webhooks: events for integrators (an EHR, a CRM, a ticketing system)
// without polling. The spool puts each event in a durable outbox in the
// transaction of the change it reports (Webhooks.FromChange and
// FromEscrow are its callbacks), once per subscribed endpoint; the
// Dispatcher posts what is due, signed, and retries with backoff until
// the endpoint answers 2xx or webhooks.max_age has passed. No message
// content is ever in an event.

// WebhookEvent is the JSON body of one event.
type WebhookEvent struct {
	ID        string    `json:"id"`
	Type      string    `json:"type"`
	Time      time.Time `json:"time"`
	QueueID   string    `json:"queue_id"`
	MessageID string    `json:"message_id,omitempty"`
	Recipient string    `json:"recipient"`
	// Delivery facts, where they apply.
	Method       string `json:"method,omitempty"`
	Status       string `json:"status,omitempty"`
	TLSVersion   string `json:"tls_version,omitempty"`
	CertVerified *bool  `json:"cert_verified,omitempty"`
	RemoteMTA    string `json:"remote_mta,omitempty"`
	Reply        string `json:"reply,omitempty"` // the destination's reply or the error, for deferred and bounced
	Detail       string `json:"detail,omitempty"`
}

// Endpoint is one subscription with its secret.
type Endpoint struct {
	URL    string
	Events []string
	Secret []byte
}

// LoadEndpoints reads the secrets of cfg's webhook endpoints; an
// unreadable or empty secret file is an error naming it.
func LoadEndpoints(cfg *config.Config) ([]Endpoint, error) {
	var out []Endpoint
	for i, e := range cfg.Webhooks.Endpoints {
		data, err := os.ReadFile(e.SecretFile)
		if err == nil {
			data = bytes.TrimSuffix(bytes.TrimSuffix(data, []byte("\n")), []byte("\r"))
			if len(data) == 0 {
				err = fmt.Errorf("%s is empty", e.SecretFile)
			}
		}
		if err != nil {
			return nil, cfg.FieldError(fmt.Sprintf("webhooks.endpoints[%d].secret_file", i), err)
		}
		out = append(out, Endpoint{URL: e.URL, Events: e.Events, Secret: data})
	}
	return out, nil
}

// Webhooks makes the events of spool changes for the endpoints.
type Webhooks struct {
	endpoints []Endpoint
}

// NewWebhooks is the event maker for endpoints (nil when there are none:
// the spool then makes no events).
func NewWebhooks(endpoints []Endpoint) *Webhooks {
	if len(endpoints) == 0 {
		return nil
	}
	return &Webhooks{endpoints: endpoints}
}

// FromChange is queue.WebhookFunc: delivered and deferred recipients of
// an attempt, bounced (expired too), dropped, held.
func (w *Webhooks) FromChange(m *queue.Message, events []queue.Event, _ bool) []queue.WebhookEvent {
	var evs []WebhookEvent
	for _, e := range events {
		switch e.Kind {
		case "attempt":
			if e.Attempt == nil {
				continue
			}
			a := e.Attempt
			for _, addr := range a.Recipients {
				r := recipientOf(m, addr)
				if r == nil {
					continue
				}
				ev := base(m, e.Time, addr)
				ev.Method, ev.Status, ev.RemoteMTA = r.Method(), r.Status, a.MXHost
				if a.Connected() {
					v := a.CertVerified
					ev.TLSVersion, ev.CertVerified = a.TLSVersion, &v
				}
				switch r.State {
				case queue.StateDelivered:
					ev.Type = "delivered"
				case queue.StateDeferred:
					ev.Type, ev.Reply = "deferred", r.LastError
				default:
					continue // skipped to the next method, bounced (its own event)
				}
				evs = append(evs, ev)
			}
		case "bounced", "expired", "dropped":
			addr, _, _ := strings.Cut(e.Detail, ": ")
			r := recipientOf(m, addr)
			if r == nil {
				continue
			}
			ev := base(m, e.Time, addr)
			ev.Type, ev.Method, ev.Status, ev.RemoteMTA, ev.Reply = "bounced", r.Method(), r.Status, r.RemoteMTA, r.LastError
			if e.Kind == "dropped" {
				ev.Type, ev.Reply, ev.Detail = "dropped", "", "dropped by the policy chain"
			}
			evs = append(evs, ev)
		case "held":
			for _, r := range m.Recipients {
				if !r.State.Final() {
					ev := base(m, e.Time, r.Address)
					ev.Type, ev.Detail = "held", "held for review"
					evs = append(evs, ev)
				}
			}
		}
	}
	return w.route(evs)
}

// FromEscrow is queue.WebhookEscrowFunc: a recipient opened the
// escrowed message, or replied to it in the portal.
func (w *Webhooks) FromEscrow(queueID, escrowID, recipient string, events []queue.EscrowEvent) []queue.WebhookEvent {
	var evs []WebhookEvent
	for _, e := range events {
		typ := ""
		switch e.Kind {
		case queue.EscrowOpened:
			typ = "escrow-opened"
		case queue.EscrowReplied:
			typ = "escrow-replied"
		default:
			continue
		}
		evs = append(evs, WebhookEvent{ID: newEventID(), Type: typ, Time: e.Time.UTC(), QueueID: queueID, Recipient: recipient, Detail: "escrow " + escrowID})
	}
	return w.route(evs)
}

// route makes one outbox entry per event and subscribed endpoint.
func (w *Webhooks) route(evs []WebhookEvent) []queue.WebhookEvent {
	var out []queue.WebhookEvent
	for _, ev := range evs {
		data, err := json.Marshal(ev)
		if err != nil {
			continue
		}
		for _, ep := range w.endpoints {
			if slices.Contains(ep.Events, ev.Type) {
				out = append(out, queue.WebhookEvent{URL: ep.URL, ID: ev.ID, Type: ev.Type, Data: data})
			}
		}
	}
	return out
}

func base(m *queue.Message, t time.Time, rcpt string) WebhookEvent {
	return WebhookEvent{ID: newEventID(), Time: t.UTC(), QueueID: m.ID, MessageID: m.Envelope.MessageID, Recipient: rcpt}
}

func recipientOf(m *queue.Message, addr string) *queue.Recipient {
	for i := range m.Recipients {
		if m.Recipients[i].Address == addr {
			return &m.Recipients[i]
		}
	}
	return nil
}

func newEventID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return "evt_" + hex.EncodeToString(b)
}

// Sign is the Sealgate-Signature header value for body at t:
// "t=UNIX,v1=HEX" with HEX = HMAC-SHA256(secret, t + "." + body).
func Sign(secret, body []byte, t time.Time) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// Outbox is what the dispatcher reads and updates (queue.Store).
type Outbox interface {
	DueWebhooks(now time.Time, limit int) ([]queue.WebhookDelivery, time.Time, error)
	WebhookDone(seq uint64) error
	WebhookFailed(d queue.WebhookDelivery, next time.Time, why string) error
}

// DispatcherOptions configure the dispatcher.
type DispatcherOptions struct {
	Outbox    Outbox
	Endpoints []Endpoint
	MaxAge    time.Duration
	// RetryInitial is the first retry delay, doubled per failure up to
	// RetryMax (10 s and 1 h by default).
	RetryInitial, RetryMax time.Duration
	Client                 *http.Client
	Logger                 *slog.Logger
	// OnFailure hears of every failed post (gaveUp when the event is
	// given up): metrics.
	OnFailure func(gaveUp bool)
	Now       func() time.Time
}

// Dispatcher posts the outbox's due events.
type Dispatcher struct {
	o       DispatcherOptions
	secrets map[string][]byte
	wake    chan struct{}
}

// NewDispatcher returns the dispatcher; Run runs it.
func NewDispatcher(o DispatcherOptions) *Dispatcher {
	if o.RetryInitial <= 0 {
		o.RetryInitial = 10 * time.Second
	}
	if o.RetryMax <= 0 {
		o.RetryMax = time.Hour
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 15 * time.Second}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	d := &Dispatcher{o: o, secrets: map[string][]byte{}, wake: make(chan struct{}, 1)}
	for _, ep := range o.Endpoints {
		d.secrets[ep.URL] = ep.Secret
	}
	return d
}

// Wake makes the dispatcher look at the outbox now.
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// pollEvery bounds how long a new event waits for the dispatcher when
// nobody wakes it.
const pollEvery = time.Second

// Run posts due events until ctx ends.
func (d *Dispatcher) Run(ctx context.Context) {
	for {
		next := d.Once(ctx)
		wait := pollEvery
		if !next.IsZero() {
			wait = min(wait, max(next.Sub(d.o.Now()), 0))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-d.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// Once posts every due event once and returns when the next one is due.
func (d *Dispatcher) Once(ctx context.Context) time.Time {
	due, next, err := d.o.Outbox.DueWebhooks(d.o.Now(), 100)
	if err != nil {
		d.o.Logger.Error("webhook outbox", "err", err)
		return d.o.Now().Add(pollEvery)
	}
	for _, w := range due {
		if ctx.Err() != nil {
			break
		}
		d.deliver(ctx, w)
	}
	if len(due) == 100 {
		return d.o.Now()
	}
	return next
}

func (d *Dispatcher) deliver(ctx context.Context, w queue.WebhookDelivery) {
	secret, ok := d.secrets[w.URL]
	log := d.o.Logger.With("url", w.URL, "event_id", w.EventID, "type", w.Type)
	if !ok {
		log.Warn("webhook event for an endpoint no longer configured: dropped")
		d.o.Outbox.WebhookDone(w.Seq)
		return
	}
	err := d.post(ctx, w, secret)
	if err == nil {
		if err := d.o.Outbox.WebhookDone(w.Seq); err != nil {
			log.Error("webhook delivered but not removed from the outbox (it will be posted again)", "err", err)
		}
		return
	}
	now := d.o.Now()
	gaveUp := now.Sub(w.Created) >= d.o.MaxAge && d.o.MaxAge > 0
	if d.o.OnFailure != nil {
		d.o.OnFailure(gaveUp)
	}
	if gaveUp {
		log.Error("webhook event given up after webhooks.max_age", "attempts", w.Attempts+1, "err", err)
		d.o.Outbox.WebhookDone(w.Seq)
		return
	}
	delay := d.o.RetryInitial
	for i := 0; i < w.Attempts && delay < d.o.RetryMax; i++ {
		delay *= 2
	}
	delay = min(delay, d.o.RetryMax)
	log.Warn("webhook post failed; retrying", "attempts", w.Attempts+1, "retry_in", delay.String(), "err", err)
	if err := d.o.Outbox.WebhookFailed(w, now.Add(delay), err.Error()); err != nil {
		log.Error("webhook outbox", "err", err)
	}
}

func (d *Dispatcher) post(ctx context.Context, w queue.WebhookDelivery, secret []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(w.Body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "sealgate-webhooks")
	req.Header.Set("Sealgate-Event-Id", w.EventID)
	req.Header.Set("Sealgate-Event-Type", w.Type)
	req.Header.Set("Sealgate-Signature", Sign(secret, w.Body, d.o.Now()))
	resp, err := d.o.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("endpoint answered %s", resp.Status)
	}
	return nil
}
