package gateway_test

import (
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/gateway/admin"
	"github.com/sealgate/sealgate/gateway/audit"
	"github.com/sealgate/sealgate/internal/testutil"
	"github.com/sealgate/sealgate/queue"
)

// TestAuditTrailOfALiveGateway: a message relayed by the running
// gateway has its story in the trail — the Message-ID from its header,
// the client, the chain, the destination's own reply, the outcome — an
// admin's hold is on record with who did it, and the trail verifies with
// a signed checkpoint, all through the admin API.
func TestAuditTrailOfALiveGateway(t *testing.T) {
	e := newE2E(t, "audit: {checkpoint_interval: 50ms}\npolicy: {escalation_chain: [tls-verified, bounce]}\n")
	e.destination("dest.test", "127.0.0.2", testutil.SinkOptions{TLS: true, CA: e.ca})
	id := e.send("alice@org.test", []string{"bob@dest.test"}, message("[secure] lab", "Results."))
	e.waitState(id, "bob@dest.test", queue.StateDelivered)

	tok, err := admin.ReadToken(e.gw.Config().AdminTokenFile())
	if err != nil {
		t.Fatal(err)
	}
	c := admin.NewAdminClient(e.gw.AdminAddr(), tok)
	found, err := c.AuditSearch(audit.Filter{Recipient: "bob@dest.test"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, r := range found {
		types = append(types, r.Type)
	}
	if strings.Join(types, " ") != "received attempt finished" {
		t.Fatalf("records %v", types)
	}
	rcv, att, fin := found[0], found[1], found[2]
	if rcv.MessageID != "<[secure] lab@org.test>" || rcv.Client == nil || !strings.HasPrefix(rcv.Client.Addr, "127.0.0.1:") ||
		len(rcv.Decisions) != 1 || rcv.Decisions[0].By != "tag [secure]" || rcv.Asked == nil || rcv.Asked.Tags[0] != "[secure]" {
		t.Errorf("received: %+v", rcv.Record)
	}
	if a := att.Attempt; a == nil || !a.CertVerified || a.MXHost != "mx.dest.test" || !strings.HasPrefix(a.Reply, "250 ") {
		t.Errorf("attempt: %+v", att.Attempt)
	}
	if len(fin.Outcomes) != 1 || fin.Outcomes[0].State != "delivered" || fin.Outcomes[0].Method != "tls-verified" {
		t.Errorf("finished: %+v", fin.Outcomes)
	}

	// An admin action through the API names who did it.
	e.dns.SetServfail("slow.test")
	held := e.send("alice@org.test", []string{"carol@slow.test"}, message("later", "x"))
	if err := c.Hold(held); err != nil {
		t.Fatal(err)
	}
	acts, err := c.AuditSearch(audit.Filter{Type: "admin", QueueID: held}, 0)
	if err != nil || len(acts) != 1 || acts[0].Type != "admin.hold" || !strings.HasPrefix(acts[0].Actor, "admin token, from 127.0.0.1:") {
		t.Errorf("admin hold on record: %+v, %v", acts, err)
	}

	deadline := time.Now().Add(10 * time.Second)
	for {
		rep, err := c.AuditVerify()
		if err != nil {
			t.Fatal(err)
		}
		if rep.OK() && rep.LastCheckpoint != nil && rep.LastCheckpoint.Seq == rep.Last {
			break
		}
		if time.Now().After(deadline) || !rep.OK() {
			t.Fatalf("verify: %+v", rep)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
