package admin

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/sealgate/sealgate/policy"
	"github.com/sealgate/sealgate/queue"
)

// RequeueOps change what happens to queued mail: decide it again under
// the current policy (queue reapply), or end it with a DSN to its sender
// (queue delete --bounce). Requeuer implements them on the spool (the
// server's, or the file of a stopped one); AdminClient over the admin API.
type RequeueOps interface {
	Reapply(id string) (Reapplied, error)
	// ReapplyAll decides every unfinished message again; a message that
	// fails has its error in its result and the others go on.
	ReapplyAll() ([]Reapplied, error)
	// Bounce ends id's pending recipients as bounced and sends the DSN.
	Bounce(id string) (Bounced, error)
}

// Reapplied is what queue reapply did to one message.
type Reapplied struct {
	ID string `json:"id"`
	// Detail is the history entry: per pending recipient, its new chain,
	// what chose it and what it was.
	Detail string `json:"detail,omitempty"`
	Held   bool   `json:"held"`
	Hold   string `json:"hold,omitempty"` // the rules holding it, "" for an admin's hold or none
	// Rejected names the rule that now refuses the message: its pending
	// recipients bounced, with the DSN DSNID.
	Rejected string `json:"rejected,omitempty"`
	DSNID    string `json:"dsn_id,omitempty"`
	Error    string `json:"error,omitempty"`
}

// Bounced is what queue delete --bounce did.
type Bounced struct {
	ID    string `json:"id"`
	DSNID string `json:"dsn_id,omitempty"` // "" for the null sender
}

// bouncedByAdmin is the reason a DSN gives for queue delete --bounce.
const bouncedByAdmin = "message deleted by the mail administrator"

// Requeuer carries out RequeueOps on a spool.
type Requeuer struct {
	Store *queue.Store
	// Engine is the policy in force (the server's live one; for a
	// stopped server, the config file's); nil: no policy.
	Engine func() *policy.Engine
	// Report builds the DSNs (report.DSNBuilder.Build).
	Report queue.ReportFunc
	// Wake tells the scheduler a message is due (nil: no scheduler).
	Wake func(id string)
	// OnBounced hears of a message an admin bounced (metrics); nil: none.
	OnBounced func(m *queue.Message)
}

// Reapply decides id again under the current policy.
func (q *Requeuer) Reapply(id string) (Reapplied, error) {
	var engine *policy.Engine
	if q.Engine != nil {
		engine = q.Engine()
	}
	var decided queue.Redecision
	m, dsnID, err := q.Store.Redecide(id, func(m *queue.Message, body []byte) (queue.Redecision, error) {
		decided = redecide(engine, m, body)
		return decided, nil
	}, q.Report)
	if err != nil {
		return Reapplied{ID: id}, err
	}
	res := Reapplied{ID: id, Held: m.Held, Hold: m.Envelope.Hold, DSNID: dsnID}
	for i := len(m.Events) - 1; i >= 0; i-- {
		if e := m.Events[i]; e.Kind == "reapplied" {
			res.Detail = e.Detail
			break
		}
	}
	if decided.Reject != "" {
		res.Rejected = decided.RejectRule
	}
	if q.Wake != nil {
		q.Wake(id)
		if dsnID != "" {
			q.Wake(dsnID)
		}
	}
	return res, nil
}

// ReapplyAll decides every unfinished message again.
func (q *Requeuer) ReapplyAll() ([]Reapplied, error) {
	msgs, err := q.Store.List()
	if err != nil {
		return nil, err
	}
	var out []Reapplied
	for _, m := range msgs {
		if !m.DoneAt.IsZero() || m.Envelope.IsDSN {
			continue
		}
		res, err := q.Reapply(m.ID)
		switch {
		case errors.Is(err, queue.ErrNotFound), errors.Is(err, queue.ErrFinished):
			continue // finished or gone since the list was read
		case err != nil:
			res.Error = err.Error()
		}
		out = append(out, res)
	}
	return out, nil
}

// Bounce ends id's pending recipients as bounced, with a DSN.
func (q *Requeuer) Bounce(id string) (Bounced, error) {
	dsnID, err := q.Store.Bounce(id, bouncedByAdmin, q.Report)
	if err != nil {
		return Bounced{ID: id}, err
	}
	if q.Wake != nil && dsnID != "" {
		q.Wake(dsnID)
	}
	if q.OnBounced != nil {
		if m, err := q.Store.Get(id); err == nil {
			q.OnBounced(m)
		}
	}
	return Bounced{ID: id, DSNID: dsnID}, nil
}

// redecide is the policy's decision about a spooled message, taken as a
// live session would take it, with what the message asked for on arrival
// (its tags and escalation header are no longer in it). Content changes
// of rules (headers added or removed) are not made to mail already
// accepted: only chains, holds and rejections change.
func redecide(e *policy.Engine, m *queue.Message, body []byte) queue.Redecision {
	env := m.Envelope
	if e == nil {
		var d queue.Redecision
		for range env.Recipients {
			d.Decisions = append(d.Decisions, queue.RcptDecision{Chain: []string{string(policy.MethodTLS)}, By: "default"})
		}
		return d
	}
	asked := askedOf(env)
	var ip netip.Addr
	if ap, err := netip.ParseAddrPort(env.ClientAddr); err == nil {
		ip = ap.Addr().Unmap()
	}
	res, _ := policy.Reapply(e, policy.Session{From: env.From, Recipients: env.Recipients, AuthUser: env.AuthUser,
		ClientIP: ip, Trusted: asked.Trusted}, policy.Prior{Tags: asked.Tags, Escalation: asked.Escalation, SubjectUnread: asked.SubjectUnread}, body)
	d := queue.Redecision{Hold: res.Hold, Reject: res.Reject, RejectRule: res.RejectRule}
	for _, rd := range res.Recipients {
		d.Decisions = append(d.Decisions, queue.RcptDecision{Chain: rd.Chain.Strings(), Rules: rd.Rules, Reasons: rd.Reasons, By: rd.By})
	}
	return d
}

// askedOf is what the message asked for on arrival: on record since
// Envelope.Asked exists, and before that read back from what chose each
// chain ("tag [secure]", "X-Sealgate-Escalate: encrypt").
func askedOf(env queue.Envelope) queue.Asked {
	if env.Asked != nil {
		return *env.Asked
	}
	a := queue.Asked{Trusted: env.AuthUser != ""}
	for _, d := range env.Decisions {
		switch by := d.By; {
		case strings.HasPrefix(by, "tag ") && !strings.HasSuffix(by, "(Subject not searched)"):
			if t := strings.TrimPrefix(by, "tag "); !containsFold(a.Tags, t) {
				a.Tags = append(a.Tags, t)
			}
		case strings.HasSuffix(by, "(Subject not searched)"):
			a.SubjectUnread = "recorded before the reason was kept"
		case strings.HasPrefix(by, "X-Sealgate-Escalate: "):
			a.Escalation, a.Trusted = strings.TrimPrefix(by, "X-Sealgate-Escalate: "), true
		}
	}
	return a
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// String is one line for the CLI.
func (r Reapplied) String() string {
	switch {
	case r.Error != "":
		return fmt.Sprintf("%s: not reapplied: %s", r.ID, r.Error)
	case r.Rejected != "":
		s := fmt.Sprintf("%s: refused by policy rule %s: pending recipients bounced", r.ID, r.Rejected)
		if r.DSNID != "" {
			s += ", DSN " + r.DSNID + " queued"
		}
		return s
	}
	s := r.ID + ": " + strings.TrimPrefix(r.Detail, "policy applied again: ")
	switch {
	case r.Held && r.Hold != "":
		s += "; held for review by policy: " + r.Hold
	case r.Held:
		s += "; still held by admin (release it to deliver)"
	}
	return s
}

// RequeueOpsFor gives the requeue operations beside the spool access q
// (from OpenQueueOps): the running server's, whose live policy decides,
// or a Requeuer on the spool file under engine (the config file's
// policy) that builds DSNs with report.
func RequeueOpsFor(q QueueOps, engine *policy.Engine, report queue.ReportFunc) (RequeueOps, error) {
	switch q := q.(type) {
	case *AdminClient:
		return q, nil
	case *queue.Store:
		return &Requeuer{Store: q, Engine: func() *policy.Engine { return engine }, Report: report}, nil
	}
	return nil, fmt.Errorf("unexpected spool access %T", q)
}

// Reapply asks the server to decide id again under its live policy.
func (c *AdminClient) Reapply(id string) (Reapplied, error) {
	var res Reapplied
	err := c.do(http.MethodPost, "/api/v1/queue/"+url.PathEscape(id)+"/reapply", &res)
	return res, requeueErr(err)
}

// ReapplyAll asks the server to decide every unfinished message again.
func (c *AdminClient) ReapplyAll() ([]Reapplied, error) {
	var res []Reapplied
	err := c.do(http.MethodPost, "/api/v1/queue/reapply", &res)
	return res, requeueErr(err)
}

// Bounce asks the server to bounce id's pending recipients with a DSN.
func (c *AdminClient) Bounce(id string) (Bounced, error) {
	var res Bounced
	err := c.do(http.MethodPost, "/api/v1/queue/"+url.PathEscape(id)+"/bounce", &res)
	return res, requeueErr(err)
}

// errRequeueOff: the server has no requeue operations (an older build,
// or a test API without them).
var errRequeueOff = errors.New("the server does not offer reapply and bounce")

func requeueErr(err error) error {
	if errors.Is(err, errConflict) {
		return errRequeueOff
	}
	return err
}

// requeueRoute serves one requeue operation: 409 on a server without
// them, the route's {id} resolved when the operation takes one (named),
// the result as JSON and a log line saying what the admin did.
func (a *API) requeueRoute(action, did string, named bool, op func(id string) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.requeue == nil {
			writeJSON(w, http.StatusConflict, map[string]string{"error": errRequeueOff.Error()})
			return
		}
		id := ""
		if named {
			var ok bool
			if id, ok = a.id(w, r); !ok {
				return
			}
		}
		res, err := op(id)
		if err != nil {
			a.fail(w, err)
			return
		}
		a.logger.Info(did, "queue_id", id, "result", res)
		a.audited(r, action, id, did)
		writeJSON(w, http.StatusOK, res)
	}
}

// requeueRoutes are the admin API's reapply and bounce routes.
func (a *API) requeueRoutes(mux *routeMux) {
	mux.HandleFunc("POST /api/v1/queue/reapply", a.requeueRoute("reapply-all", "policy applied again to every queued message by admin", false,
		func(string) (any, error) {
			res, err := a.requeue.ReapplyAll()
			if res == nil {
				res = []Reapplied{}
			}
			return res, err
		}))
	mux.HandleFunc("POST /api/v1/queue/{id}/reapply", a.requeueRoute("reapply", "policy applied again by admin", true,
		func(id string) (any, error) { return a.requeue.Reapply(id) }))
	mux.HandleFunc("POST /api/v1/queue/{id}/bounce", a.requeueRoute("bounce", "message deleted by admin with a DSN to the sender", true,
		func(id string) (any, error) { return a.requeue.Bounce(id) }))
}
