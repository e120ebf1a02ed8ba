package audit

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/sealgate/sealgate/queue"
)

// Record is one audit record. Type says what happened: "received",
// "attempt", "skipped", "dropped", "bounced", "expired", "dsn", "held",
// "released", "retry", "deleted", "reapplied", "finished", or an admin
// action ("admin.delete", "admin.policy-reload", …) with its Actor.
type Record struct {
	Time       time.Time `json:"time"`
	Type       string    `json:"type"`
	QueueID    string    `json:"queue_id,omitempty"`
	MessageID  string    `json:"message_id,omitempty"`
	From       string    `json:"from,omitempty"` // "<>" for the null sender
	Recipients []string  `json:"recipients,omitempty"`
	Actor      string    `json:"actor,omitempty"`
	Detail     string    `json:"detail,omitempty"`
	// Received: the client, the size and the policy's decision per
	// recipient.
	Client    *Client      `json:"client,omitempty"`
	Size      int64        `json:"size,omitempty"`
	Decisions []Decision   `json:"decisions,omitempty"`
	Asked     *queue.Asked `json:"asked,omitempty"`
	Hold      string       `json:"hold,omitempty"`
	// Attempt: everything the attempt record holds (TLS version, cipher,
	// certificate verdict, MTA-STS, DANE, the content protection, the
	// destination's own reply).
	Attempt *queue.Attempt `json:"attempt,omitempty"`
	// Finished: how each recipient ended.
	Outcomes []Outcome `json:"outcomes,omitempty"`
}

// Client is who handed the message over.
type Client struct {
	Addr     string `json:"addr,omitempty"`
	Helo     string `json:"helo,omitempty"`
	AuthUser string `json:"auth_user,omitempty"`
	TLS      string `json:"tls,omitempty"` // "TLS1.3 TLS_AES_128_GCM_SHA256", "" in clear
}

// Decision is the policy's chain for one recipient and what chose it.
type Decision struct {
	Recipient string   `json:"recipient"`
	Chain     []string `json:"chain"`
	By        string   `json:"by,omitempty"`
	Rules     []string `json:"rules,omitempty"`
}

// Outcome is how one recipient ended.
type Outcome struct {
	Recipient string    `json:"recipient"`
	State     string    `json:"state"`
	Method    string    `json:"method"`
	Status    string    `json:"status,omitempty"`
	RemoteMTA string    `json:"remote_mta,omitempty"`
	Result    string    `json:"result,omitempty"` // the last reply or error
	Attempts  int       `json:"attempts"`
	At        time.Time `json:"at,omitzero"`
}

// FromChange is the queue.AuditFunc: the records of the events a change
// of m added, and a "finished" record when the change finished it.
func FromChange(m *queue.Message, events []queue.Event, finished bool) [][]byte {
	var out [][]byte
	for _, e := range events {
		r := base(m, e.Time, e.Kind)
		r.Detail = e.Detail
		switch e.Kind {
		case "received":
			env := m.Envelope
			r.Recipients = env.Recipients
			r.Client = &Client{Addr: env.ClientAddr, Helo: env.ClientHelo, AuthUser: env.AuthUser, TLS: env.TLS}
			r.Size, r.Asked, r.Hold = m.Size, env.Asked, env.Hold
			for i, d := range env.Decisions {
				if i < len(env.Recipients) {
					r.Decisions = append(r.Decisions, Decision{Recipient: env.Recipients[i], Chain: d.Chain, By: d.By, Rules: d.Rules})
				}
			}
		case "attempt":
			if e.Attempt != nil {
				a := *e.Attempt
				r.Attempt, r.Recipients = &a, a.Recipients
			}
		default:
			// "addr: why" names the recipient the event is about.
			if addr, _, ok := strings.Cut(e.Detail, ": "); ok && strings.Contains(addr, "@") && !strings.Contains(addr, " ") {
				r.Recipients = []string{addr}
			}
		}
		out = append(out, mustJSON(r))
	}
	if finished {
		r := base(m, m.DoneAt, "finished")
		for _, rc := range m.Recipients {
			r.Recipients = append(r.Recipients, rc.Address)
			r.Outcomes = append(r.Outcomes, Outcome{Recipient: rc.Address, State: string(rc.State), Method: rc.Method(),
				Status: rc.Status, RemoteMTA: rc.RemoteMTA, Result: rc.LastError, Attempts: rc.Attempts, At: rc.DoneAt})
		}
		out = append(out, mustJSON(r))
	}
	return out
}

func base(m *queue.Message, t time.Time, typ string) Record {
	from := m.Envelope.From
	if from == "" {
		from = "<>"
	}
	return Record{Time: t.UTC(), Type: typ, QueueID: m.ID, MessageID: m.Envelope.MessageID, From: from}
}

// Admin is the record of an admin action that changes no message record
// by itself (or removes it): who, what, on what.
func Admin(t time.Time, action, actor, queueID, detail string) []byte {
	return mustJSON(Record{Time: t.UTC(), Type: "admin." + action, Actor: actor, QueueID: queueID, Detail: detail})
}

func mustJSON(r Record) []byte {
	data, err := json.Marshal(r)
	if err != nil { // only plain fields: it cannot happen, and it must not stop the change
		data, _ = json.Marshal(Record{Time: r.Time, Type: r.Type, QueueID: r.QueueID, Detail: "record did not marshal: " + err.Error()})
	}
	return data
}

// FromEscrow is queue.Options.AuditEscrow: an escrowed recipient's
// access events (link issued, notice sent, code sent or failed, opened,
// attachment downloaded, replied, revoked, expired), each with the
// client address it came from.
func FromEscrow(queueID, escrowID, recipient string, events []queue.EscrowEvent) [][]byte {
	var out [][]byte
	for _, e := range events {
		detail := e.Detail
		if e.Client != "" {
			detail = strings.TrimSpace("from " + e.Client + "; " + detail)
			detail = strings.TrimSuffix(detail, ";")
		}
		out = append(out, mustJSON(Record{Time: e.Time.UTC(), Type: "escrow." + strings.ReplaceAll(e.Kind, " ", "-"), QueueID: queueID,
			Recipients: []string{recipient}, Detail: strings.TrimSpace("escrow " + escrowID + ": " + detail)}))
	}
	return out
}
