package admin

import (
	"fmt"
	"strings"

	"github.com/sealgate/sealgate/queue"
)

// ListStates are the states a queue listing can be filtered by.
var ListStates = []string{"pending", "queued", "deferred", "held", "delivered", "bounced", "dropped"}

// StateFilter is the filter of a queue listing by state: pending is
// every message still to be delivered and not held; held is the held
// ones; the recipient states keep a message when any of its recipients
// is in that state (a held message's pending recipients are "held", not
// "queued" or "deferred"). "" keeps all (nil).
func StateFilter(state string) (func(queue.Message) bool, error) {
	switch state {
	case "":
		return nil, nil
	case "pending":
		return func(m queue.Message) bool {
			return !m.Held && m.DoneAt.IsZero() && anyState(m, queue.StateQueued, queue.StateDeferred)
		}, nil
	case "held":
		return func(m queue.Message) bool { return m.Held && anyState(m, queue.StateQueued, queue.StateDeferred) }, nil
	case "queued", "deferred":
		st := queue.State(state)
		return func(m queue.Message) bool { return !m.Held && anyState(m, st) }, nil
	case "delivered", "bounced", "dropped":
		st := queue.State(state)
		return func(m queue.Message) bool { return anyState(m, st) }, nil
	}
	return nil, fmt.Errorf("state %q: must be one of %s", state, strings.Join(ListStates, ", "))
}

func anyState(m queue.Message, states ...queue.State) bool {
	for _, r := range m.Recipients {
		for _, st := range states {
			if r.State == st {
				return true
			}
		}
	}
	return false
}
