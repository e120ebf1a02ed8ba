package scheduler

import (
	"context"
	"strings"

	"github.com/sealgate/sealgate/gateway/delivery"
	"github.com/sealgate/sealgate/policy"
	"github.com/sealgate/sealgate/queue"
)

// Group is the recipients of one message that are due at the same chain
// method and go to the same destination.
type Group struct {
	Domain string // destination domain; "" when relaying via a smarthost
	Method string // the chain method these recipients are at
	// HasNext: the recipients' chains go on after this method, so a
	// method that cannot apply may skip to the next one.
	HasNext bool
	Rcpts   []string
}

// Action is what a method makes of a group. Exactly one of Send and
// Outcome is set.
type Action struct {
	// Send is the message to deliver to the group, as it must leave
	// (before DKIM signing, which the scheduler adds). A method that
	// does not transform the message returns the body it was given,
	// unread: delivery streams it, and every such group shares one
	// signature. One that does returns its form (delivery.Bytes).
	Send delivery.Body
	// VerifiedTLS raises the delivery's requirement to TLS with a
	// verified certificate (or a DANE match); RequiredBy says why, for
	// the attempt record.
	VerifiedTLS bool
	RequiredBy  string
	// SkipOnTLSFailure: when the destination cannot meet the TLS
	// requirement and the chain goes on, move to the next method now
	// instead of deferring.
	SkipOnTLSFailure bool
	// Protection says how the method protected Send beyond the
	// transport (the keys it encrypted to), for the attempt record.
	Protection string

	// Delivered, when set, is told the outcome of delivering Send (per
	// recipient), after the delivery and before the spool records it: a
	// method that keeps its own records (escrow's access log) learns
	// whether its form arrived.
	Delivered func(outcomes []queue.RcptOutcome)

	// Outcome settles every recipient of the group without a delivery:
	// a final result (delivered elsewhere, dropped, bounced), a
	// temporary one (held, with the reason), or Skip to the next method
	// of the chain (Message says why, and the spool records it).
	Outcome *queue.RcptOutcome
}

// Method carries out one chain method for a group. Prepare is called at
// most once per group and attempt, from several goroutines at once for
// different messages; body is the spooled message (CRLF line endings):
// a method that needs its bytes calls body.Bytes() and must not modify
// them. A Method that needs time (key discovery,
// encryption) honours ctx.
type Method interface {
	Prepare(ctx context.Context, m *queue.Message, g Group, body Body) Action
}

// PerRecipient is implemented by a Method whose form differs from one
// recipient to the next (an escrow notice holds each recipient's own
// link): the scheduler gives it groups of exactly one recipient, so one
// recipient never receives what was made for another.
type PerRecipient interface {
	Method
	PerRecipient()
}

// MethodFunc adapts a function to Method.
type MethodFunc func(ctx context.Context, m *queue.Message, g Group, body Body) Action

// Prepare calls f.
func (f MethodFunc) Prepare(ctx context.Context, m *queue.Message, g Group, body Body) Action {
	return f(ctx, m, g, body)
}

// Methods maps chain method names (policy.Method values) to handlers.
type Methods map[string]Method

// Builtin returns the handlers of the methods that need nothing but the
// transport: tls, tls-verified, drop and bounce. The node adds the ones
// that transform messages (pgp, smime, escrow) when they are configured.
func Builtin() Methods {
	return Methods{
		string(policy.MethodTLS):         MethodFunc(sendAsIs),
		string(policy.MethodTLSVerified): MethodFunc(sendVerified),
		string(policy.MethodDrop):        MethodFunc(drop),
		string(policy.MethodBounce):      MethodFunc(bounce),
	}
}

// sendAsIs is tls: the message as spooled, over the TLS the transport
// policy requires (opportunistic at the least).
func sendAsIs(_ context.Context, _ *queue.Message, _ Group, body Body) Action {
	return Action{Send: body}
}

// sendVerified is tls-verified: the message as spooled, only over TLS
// with a verified certificate; when the destination cannot do that and
// the chain goes on, the next method is tried.
func sendVerified(_ context.Context, m *queue.Message, g Group, body Body) Action {
	by := "policy chain tls-verified"
	if rules := recipientRules(m, g.Rcpts); rules != "" {
		by += " (rule " + rules + ")"
	}
	return Action{Send: body, VerifiedTLS: true, RequiredBy: by, SkipOnTLSFailure: g.HasNext}
}

func drop(context.Context, *queue.Message, Group, Body) Action {
	return Action{Outcome: &queue.RcptOutcome{Dropped: true, Status: "2.0.0",
		Message: "dropped by policy: no method of the chain could deliver and the chain ends in drop"}}
}

func bounce(context.Context, *queue.Message, Group, Body) Action {
	return Action{Outcome: &queue.RcptOutcome{Permanent: true, Status: "5.7.10",
		Message: "returned by policy: no method of the chain could deliver (TLS with a verified certificate was required) and the chain ends in bounce"}}
}

// notProvided handles recipients whose chain reaches a method this node
// has no handler for: the next method of the chain is tried, as when a
// method cannot apply (pgp without a key); at the end of the chain they
// are held until an admin configures it or the message expires.
func notProvided(g Group) Action {
	if g.HasNext {
		return Action{Outcome: &queue.RcptOutcome{Skip: true, Status: "4.7.0",
			Message: "this gateway does not provide " + g.Method}}
	}
	return Action{Outcome: &queue.RcptOutcome{Status: "4.7.0",
		Message: "held: the policy chain needs " + g.Method + ", which this gateway does not provide"}}
}

// recipientRules names the policy rules that decided the group's chain.
func recipientRules(m *queue.Message, rcpts []string) string {
	for _, r := range m.Recipients {
		if len(rcpts) > 0 && r.Address == rcpts[0] {
			return strings.Join(r.Rules, ", ")
		}
	}
	return ""
}
