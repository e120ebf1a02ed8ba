package scheduler

import (
	"context"

	"github.com/sealgate/sealgate/gateway/delivery"
	"github.com/sealgate/sealgate/policy"
	"github.com/sealgate/sealgate/queue"
)

// Store is what the scheduler needs from the spool; queue.Store
// implements it. Pending is read once at start; afterwards the scheduler
// learns about work through Wake. RecordAttempt is called once per
// delivery group and returns the updated message (and the ID of a DSN it
// enqueued, if any). DomainInfo and ObserveTLS are the TLS history of
// destinations: read before a delivery (it may raise the TLS level),
// written after it. A DomainInfo error stops the group's delivery: it
// never goes out without knowing the floor the history sets.
type Store interface {
	Get(id string) (*queue.Message, error)
	OpenBody(id string) (queue.Spooled, error)
	Pending() ([]queue.Due, error)
	RecordAttempt(id string, att queue.Attempt, outcomes []queue.RcptOutcome, dsn queue.DSNFunc) (*queue.Message, string, error)
	DomainInfo(domain string) (*queue.DomainInfo, error)
	ObserveTLS(obs queue.TLSObservation) error
}

// Deliverer delivers one message to the recipients of one destination
// and reports the attempt and a result per recipient. It never returns
// fewer outcomes than recipients it was given, and it does not retry.
// delivery.Deliverer implements it.
type Deliverer interface {
	Deliver(ctx context.Context, req delivery.Request) (queue.Attempt, []queue.RcptOutcome)
}

// MTASTSLookup finds the MTA-STS policy in force for a destination
// domain, nil when there is none. mtasts.Resolver implements it.
type MTASTSLookup interface {
	PolicyFor(ctx context.Context, domain string) *policy.MTASTSPolicy
}

// TLSReporter counts the TLS sessions of deliveries for daily TLS
// reports (RFC 8460). report.TLSReporter implements it.
type TLSReporter interface {
	Record(domain string, req policy.TLSRequirement, s delivery.TLSSession)
}
