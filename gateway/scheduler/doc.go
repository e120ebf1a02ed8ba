// Package scheduler decides when each spooled message is attempted and
// what each of its recipients gets: it keeps a timer heap of message IDs
// (rebuilt from the spool at start), runs at most max_concurrency
// attempts at once, never two of the same message, and at most
// max_per_destination deliveries to one destination — a message whose
// destination is full waits in that destination's line without holding
// one of the global slots (fairness.go), so one slow destination cannot
// starve the others — groups a message's due
// recipients by destination and chain method, asks the registered Method
// for each group what to do (deliver this form of the message, skip to
// the next method, or settle the recipients without delivery), decides
// the transport's TLS requirement (package policy, from the domain's TLS
// history, its MTA-STS policy and the configuration), DKIM-signs each
// distinct outgoing form once per attempt, hands deliveries to the
// Deliverer and records every attempt in the spool.
//
// It does not speak SMTP (package delivery does), does not know how the
// spool is stored (the Store interface), and does not know any chain
// method: tls, tls-verified, drop and bounce are handlers in methods.go
// that the node registers like any other; a method nobody registered
// holds its recipients with "not provided". There is no goroutine per
// waiting message: one loop sleeps until the earliest due time.
package scheduler
