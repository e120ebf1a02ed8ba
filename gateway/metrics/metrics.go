// Package metrics is the node's Prometheus instrumentation: what an
// operator graphs in Grafana — messages received and how each recipient
// ended, by method; delivery sessions by TLS version and certificate
// verdict; delivery latency; policy decisions by rule; escrow opens;
// queue depth and the age of the oldest message, read from counters and
// one key, never by opening the spool's records.
//
// It holds its own registry (no global state) and is fed by hooks the
// node wires: smtpin's OnAccepted, the scheduler's OnAttempt, the
// portal's OnOpened.
package metrics

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sealgate/sealgate/queue"
)

// Spool is what the queue gauges read (queue.Store).
type Spool interface {
	Counts() (queue.Counts, error)
	OldestUnfinished() (time.Time, bool, error)
}

// Metrics are the node's collectors.
type Metrics struct {
	reg         *prometheus.Registry
	received    prometheus.Counter
	recipients  *prometheus.CounterVec
	sessions    *prometheus.CounterVec
	deliveries  *prometheus.CounterVec
	latency     prometheus.Histogram
	decisions   *prometheus.CounterVec
	escrowOpens prometheus.Counter
	webhookFail *prometheus.CounterVec
	now         func() time.Time

	fleetOnce sync.Once // the fleet gauges exist only on a fleet's nodes
	sharedUp  prometheus.Gauge
	leading   prometheus.Gauge
}

// New registers the collectors, the queue gauges over spool, and the
// Go runtime and process collectors.
func New(spool Spool) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), now: time.Now}
	m.received = prometheus.NewCounter(prometheus.CounterOpts{Name: "sealgate_messages_received_total",
		Help: "Messages accepted and spooled (250 sent to the client)."})
	m.recipients = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sealgate_recipient_outcomes_total",
		Help: "Recipient results of delivery attempts by outcome (delivered, deferred, bounced, dropped, skipped) and chain method."},
		[]string{"outcome", "method"})
	m.sessions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sealgate_delivery_sessions_total",
		Help: "Delivery attempts that reached a mail server, by TLS version (\"none\" in clear) and whether its certificate was verified."},
		[]string{"tls_version", "verified"})
	m.deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sealgate_deliveries_total",
		Help: "Recipients delivered over SMTP, by the TLS version of the session that delivered them (\"none\" in clear) and whether its certificate was verified."},
		[]string{"tls_version", "verified"})
	m.latency = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sealgate_delivery_latency_seconds",
		Help:    "Time from acceptance to delivery, per delivered recipient.",
		Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600}})
	m.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sealgate_policy_decisions_total",
		Help: "Recipients decided at intake, by the rule that set their chain (\"none\" for the default) and the chain's first method."},
		[]string{"rule", "method"})
	m.escrowOpens = prometheus.NewCounter(prometheus.CounterOpts{Name: "sealgate_escrow_opens_total",
		Help: "Escrowed messages opened by their recipients in the portal."})
	m.webhookFail = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sealgate_webhook_failures_total",
		Help: "Failed webhook posts; gave_up=\"true\" for events given up after webhooks.max_age."}, []string{"gave_up"})
	depth := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sealgate_queue_messages",
		Help: "Messages in the spool with something still to deliver."}, func() float64 {
		c, err := spool.Counts()
		if err != nil {
			return -1
		}
		return float64(c.Unfinished)
	})
	oldest := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sealgate_queue_oldest_message_age_seconds",
		Help: "Age of the oldest message still to deliver (0 when the queue is empty)."}, func() float64 {
		t, ok, err := spool.OldestUnfinished()
		if err != nil || !ok {
			return 0
		}
		return m.now().Sub(t).Seconds()
	})
	quarantined := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sealgate_spool_quarantined_messages",
		Help: "Spool records that could not be read and were moved aside."}, func() float64 {
		c, err := spool.Counts()
		if err != nil {
			return -1
		}
		return float64(c.Quarantined)
	})
	m.reg.MustRegister(m.received, m.recipients, m.sessions, m.deliveries, m.latency, m.decisions, m.escrowOpens, m.webhookFail, depth, oldest, quarantined,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Accepted counts a spooled message and its recipients' decisions.
func (m *Metrics) Accepted(env queue.Envelope) {
	m.received.Inc()
	for i := range env.Recipients {
		rule, method := "none", "tls"
		if i < len(env.Decisions) {
			d := env.Decisions[i]
			if len(d.Rules) > 0 {
				rule = d.Rules[len(d.Rules)-1]
			}
			if len(d.Chain) > 0 {
				method = d.Chain[0]
			}
		}
		m.decisions.WithLabelValues(rule, method).Inc()
	}
}

// Attempt counts what one delivery attempt of msg did.
func (m *Metrics) Attempt(msg *queue.Message, att queue.Attempt, outcomes []queue.RcptOutcome) {
	tlsVersion, verified := att.TLSVersion, strconv.FormatBool(att.CertVerified)
	if tlsVersion == "" {
		tlsVersion = "none"
	}
	if att.Connected() {
		m.sessions.WithLabelValues(tlsVersion, verified).Inc()
	}
	for _, o := range outcomes {
		outcome := "deferred"
		switch {
		case o.Delivered:
			outcome = "delivered"
			m.latency.Observe(m.now().Sub(msg.Received).Seconds())
			if att.Connected() {
				m.deliveries.WithLabelValues(tlsVersion, verified).Inc()
			}
		case o.Dropped:
			outcome = "dropped"
		case o.Permanent:
			outcome = "bounced"
		case o.Skip:
			outcome = "skipped"
		}
		method := o.Method
		if method == "" {
			method = "tls"
		}
		m.recipients.WithLabelValues(outcome, method).Inc()
	}
	// Recipients past the message's expiry bounced in the same record,
	// whether or not this attempt was theirs.
	m.countEvents(msg, "attempt", "expired")
}

// AdminBounced counts the recipients an admin bounced (queue delete
// --bounce): msg is the message after it.
func (m *Metrics) AdminBounced(msg *queue.Message) { m.countEvents(msg, "deleted", "bounced") }

// countEvents counts as bounced the recipients named by the events of
// kind that were recorded with the newest event of kind at (one change
// stamps its events with one time).
func (m *Metrics) countEvents(msg *queue.Message, at, kind string) {
	var when time.Time
	for i := len(msg.Events) - 1; i >= 0; i-- {
		if msg.Events[i].Kind == at {
			when = msg.Events[i].Time
			break
		}
	}
	if when.IsZero() {
		return
	}
	for _, e := range msg.Events {
		if e.Kind != kind || !e.Time.Equal(when) {
			continue
		}
		addr, _, _ := strings.Cut(e.Detail, ": ")
		for _, r := range msg.Recipients {
			if r.Address == addr {
				m.recipients.WithLabelValues("bounced", r.Method()).Inc()
				break
			}
		}
	}
}

// EscrowOpened counts a recipient opening an escrowed message.
func (m *Metrics) EscrowOpened() { m.escrowOpens.Inc() }

// fleet registers the gauges of a node that shares a store.
func (m *Metrics) fleet() {
	m.fleetOnce.Do(func() {
		m.sharedUp = prometheus.NewGauge(prometheus.GaugeOpts{Name: "sealgate_shared_store_up",
			Help: "1 while the fleet's shared store (store.postgres) answers, 0 while it does not."})
		m.leading = prometheus.NewGauge(prometheus.GaugeOpts{Name: "sealgate_fleet_leader",
			Help: "1 while this node runs the fleet's leader-only jobs."})
		m.reg.MustRegister(m.sharedUp, m.leading)
	})
}

// SharedStoreUp records whether the shared store answers.
func (m *Metrics) SharedStoreUp(up bool) {
	m.fleet()
	m.sharedUp.Set(b2f(up))
}

// Leading records whether this node is the fleet's leader.
func (m *Metrics) Leading(leading bool) {
	m.fleet()
	m.leading.Set(b2f(leading))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// WebhookFailed counts a failed webhook post.
func (m *Metrics) WebhookFailed(gaveUp bool) {
	m.webhookFail.WithLabelValues(strconv.FormatBool(gaveUp)).Inc()
}
