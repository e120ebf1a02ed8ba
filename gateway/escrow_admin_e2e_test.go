package gateway_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/gateway/admin"
	"github.com/sealgate/sealgate/queue"
)

// TestAdminRevokesEscrowedMessage is the compliance officer's path on
// a running gateway: the admin API lists a [secure] message's access
// records, revokes one recipient and then the message, and each
// revoked link gets the very page an unknown link gets.
func TestAdminRevokesEscrowedMessage(t *testing.T) {
	x := newEscrowE2E(t, "")
	id := x.send("alice@org.test", []string{"bob@dest.test", "carol@dest.test"}, labMessage(pdfBytes()))
	x.waitState(id, "bob@dest.test", queue.StateDelivered)
	x.waitState(id, "carol@dest.test", queue.StateDelivered)
	bobLink, _ := x.noticeLink(t, "bob@dest.test")
	carolLink, _ := x.noticeLink(t, "carol@dest.test")

	c := browser(t)
	unknownResp, unknown := get(t, c, x.portal+"/m/"+queue.NewEscrowToken())
	if unknownResp.StatusCode != 404 {
		t.Fatalf("unknown link: %d", unknownResp.StatusCode)
	}
	neutral := func(name, link string) {
		t.Helper()
		if resp, page := get(t, c, link); resp.StatusCode != unknownResp.StatusCode || page != unknown {
			t.Errorf("%s: %d, a page unlike the unknown link's:\n%s", name, resp.StatusCode, page)
		}
	}
	open := func(name, link string) {
		t.Helper()
		if resp, page := get(t, c, link); resp.StatusCode != 200 || !strings.Contains(page, "Email me a code") {
			t.Errorf("%s: %d\n%s", name, resp.StatusCode, page)
		}
	}
	open("bob before revocation", bobLink)

	tok, err := admin.ReadToken(x.gw.Config().AdminTokenFile())
	if err != nil {
		t.Fatal(err)
	}
	ops := admin.NewAdminClient(x.gw.AdminAddr(), tok).Escrow()
	recs, err := ops.ForQueueID(id)
	if err != nil || len(recs) != 2 {
		t.Fatalf("ForQueueID(%s) = %+v, %v", id, recs, err)
	}
	msgID := recs[0].MessageID

	if _, err := ops.Revoke(msgID, "bob@dest.test"); err != nil {
		t.Fatal(err)
	}
	neutral("bob after his revocation", bobLink)
	open("carol after bob's revocation", carolLink)

	if _, err := ops.Revoke(msgID, ""); err != nil {
		t.Fatal(err)
	}
	neutral("carol after the message's revocation", carolLink)
	recs, err = ops.Show(msgID)
	if err != nil || len(recs) != 2 {
		t.Fatalf("Show = %+v, %v", recs, err)
	}
	for _, r := range recs {
		last := r.Events[len(r.Events)-1]
		if r.State != "revoked" || r.Destroyed.IsZero() || last.Kind != queue.EscrowRevoked || !strings.Contains(last.Detail, "revoked by admin") {
			t.Errorf("%s after revocation: state %s, destroyed %v, last event %+v", r.Recipient, r.State, r.Destroyed, last)
		}
	}
}

// A gateway without escrow says so on the escrow routes, rather than
// listing nothing.
func TestAdminEscrowRoutesWithEscrowOff(t *testing.T) {
	e := newE2E(t, "")
	tok, err := admin.ReadToken(e.gw.Config().AdminTokenFile())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.NewAdminClient(e.gw.AdminAddr(), tok).Escrow().List(); !errors.Is(err, admin.ErrEscrowOff) {
		t.Errorf("escrow list on a gateway without escrow: %v, want ErrEscrowOff", err)
	}
}
