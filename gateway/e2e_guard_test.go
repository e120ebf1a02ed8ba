package gateway_test

import (
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testutil"
	"github.com/sealgate/sealgate/queue"
)

// TestMXOnLoopbackIsRefusedByDefault: with outbound.allowed_private_networks
// empty (the default), a domain whose MX resolves to loopback is never
// dialled; the recipient defers with a reason that names the address and
// the key, and the attempt record says so too.
func TestMXOnLoopbackIsRefusedByDefault(t *testing.T) {
	e := newE2E(t, "outbound: {allowed_private_networks: []}\n")
	sink := e.destination("dest.test", "127.0.0.2", testutil.SinkOptions{})
	id := e.send("alice@org.test", []string{"bob@dest.test"}, message("ssrf", "to an internal host"))
	m := e.waitAttempts(id, "bob@dest.test", 2)
	r := m.Recipients[0]
	if r.State != queue.StateDeferred || r.Status != "4.4.4" ||
		!strings.Contains(r.LastError, "mx.dest.test[127.0.0.2]: loopback address, not dialled (not in outbound.allowed_private_networks)") {
		t.Errorf("recipient %+v", r)
	}
	if att := lastAttempt(m); att == nil || !strings.Contains(att.Reply, "loopback address") {
		t.Errorf("attempt record %+v", att)
	}
	if n := sink.Connections(); n != 0 {
		t.Errorf("the loopback MX was dialled %d times", n)
	}
}
