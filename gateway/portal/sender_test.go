package portal

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/queue"
)

// senderLink escrows lab for bob and carol and returns their links and
// the sender's.
func (f *fixture) senderLink() (bob, carol, sender string) {
	f.t.Helper()
	bob = f.deposit("q1", "bob@dest.test", lab)
	carol = f.deposit("q1", "carol@dest.test", lab)
	sender, err := f.escrow.IssueSenderLink("q1")
	if err != nil || sender == "" {
		f.t.Fatalf("sender link %q, %v", sender, err)
	}
	if again, err := f.escrow.IssueSenderLink("q1"); again != "" || err != nil {
		f.t.Fatalf("a second sender link for one message: %q, %v", again, err)
	}
	return bob, carol, sender
}

func TestSenderRevokesOneRecipientThenAll(t *testing.T) {
	f := newFixture(t)
	bob, carol, sender := f.senderLink()
	link := f.srv.URL + "/s/" + sender
	c := f.client()

	resp, page := do(t, c, "GET", link, nil)
	if resp.StatusCode != 200 || !strings.Contains(page, "You sent a secure message") || strings.Contains(page, "haemoglobin") ||
		strings.Contains(page, "bob@dest.test") {
		t.Fatalf("sender link page %d:\n%s", resp.StatusCode, page)
	}
	token := csrf(t, page)

	// Nothing happens without a proven address.
	if resp, _ := do(t, c, "POST", link+"/revoke", url.Values{"csrf": {token}}); resp.Request.URL.Path != "/s/"+sender {
		t.Errorf("revoke without a session ended at %s", resp.Request.URL)
	}
	if _, err := f.escrow.Lookup(bob); err != nil {
		t.Fatalf("revoked without a code: %v", err)
	}

	_, page = do(t, c, "POST", link+"/code", url.Values{"csrf": {token}})
	if !strings.Contains(page, "We have emailed a code to a…@org.test") {
		t.Fatalf("code page:\n%s", page)
	}
	if m := f.spool.mails[len(f.spool.mails)-1]; !strings.Contains(m, "To: alice@org.test\r\n") {
		t.Fatalf("the sender's code went elsewhere:\n%s", m)
	}
	resp, _ = do(t, c, "POST", link+"/verify", url.Values{"csrf": {token}, "code": {"00000000"}})
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong code: %d", resp.StatusCode)
	}
	resp, page = do(t, c, "POST", link+"/verify", url.Values{"csrf": {token}, "code": {f.spool.lastCode(t)}})
	if resp.StatusCode != 200 || !strings.Contains(page, "bob@dest.test") || !strings.Contains(page, "carol@dest.test") ||
		strings.Contains(page, "haemoglobin") {
		t.Fatalf("sender page %d:\n%s", resp.StatusCode, page)
	}

	// A recipient's session opens no sender page, nor the reverse.
	if _, other := do(t, c, "GET", f.srv.URL+"/m/"+bob, nil); strings.Contains(other, "haemoglobin") {
		t.Error("the sender's session opened bob's message")
	}

	v, _ := f.escrow.SenderLookup(sender)
	carolID := v.Recipients[1].ID
	if v.Recipients[1].Address != "carol@dest.test" {
		t.Fatalf("recipients %+v", v.Recipients)
	}
	_, page = do(t, c, "POST", link+"/revoke", url.Values{"csrf": {csrf(t, page)}, "recipient": {carolID}})
	if !strings.Contains(page, "Access for that recipient was withdrawn.") || !strings.Contains(page, "access withdrawn") {
		t.Fatalf("after revoking carol:\n%s", page)
	}
	if _, err := f.escrow.Lookup(carol); err == nil {
		t.Error("carol's link still works")
	}
	if _, err := f.escrow.Lookup(bob); err != nil {
		t.Errorf("bob's link was revoked with carol's: %v", err)
	}
	if resp, _ := do(t, c, "POST", link+"/revoke", url.Values{"csrf": {csrf(t, page)}, "recipient": {"X.1"}}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("revoking another message's record: %d", resp.StatusCode)
	}

	_, page = do(t, c, "POST", link+"/revoke", url.Values{"csrf": {csrf(t, page)}})
	if !strings.Contains(page, "The message was withdrawn") {
		t.Fatalf("after revoking all:\n%s", page)
	}
	_, gone := do(t, c, "GET", f.srv.URL+"/m/"+queue.NewEscrowToken(), nil)
	for _, u := range []string{"/m/" + bob, "/s/" + sender} {
		if resp, got := do(t, c, "GET", f.srv.URL+u, nil); resp.StatusCode != 404 || got != gone {
			t.Errorf("%s after the sender's revocation: %d\n%s", u, resp.StatusCode, got)
		}
	}
	entries, _ := f.escrow.Show(v.Message.ID)
	if entries[0].Message.RevokedBy != "sender" {
		t.Errorf("revoked by %q", entries[0].Message.RevokedBy)
	}
	var log []string
	for _, ev := range entries[0].Recipient.Events {
		log = append(log, ev.Kind+": "+ev.Detail+" @"+ev.Client)
	}
	all := strings.Join(log, "\n")
	for _, want := range []string{queue.EscrowSenderLinkIssued, queue.EscrowSenderCodeSent, "sender code failed: wrong code (1 of 5) @127.0.0.1",
		queue.EscrowSenderVerified, "revoked: message revoked by sender alice@org.test @127.0.0.1"} {
		if !strings.Contains(all, want) {
			t.Errorf("bob's access log lacks %q:\n%s", want, all)
		}
	}
}

func TestSenderFormsNeedCSRFAndUnknownLinksAreNeutral(t *testing.T) {
	f := newFixture(t)
	_, _, sender := f.senderLink()
	link := f.srv.URL + "/s/" + sender
	c := f.client()
	_, page := do(t, c, "GET", link, nil)
	good := csrf(t, page)
	_, bobPage := do(t, c, "GET", f.srv.URL+"/m/"+f.deposit("q2", "bob@dest.test", lab), nil)
	forged := "x" + good[1:]
	if forged == good { // one token in 64 starts with x
		forged = "y" + good[1:]
	}

	for name, form := range map[string]url.Values{
		"no token":              {},
		"forged token":          {"csrf": {forged}},
		"a recipient's token":   {"csrf": {csrf(t, bobPage)}},
		"revoke without a form": {"recipient": {""}},
	} {
		for _, action := range []string{"/code", "/verify", "/revoke"} {
			if resp, _ := do(t, c, "POST", link+action, form); resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s %s: %d, want 403", name, action, resp.StatusCode)
			}
		}
	}
	if len(f.spool.mails) != 0 {
		t.Errorf("forged forms sent %d mails", len(f.spool.mails))
	}

	_, gone := do(t, c, "GET", f.srv.URL+"/m/"+queue.NewEscrowToken(), nil)
	for _, u := range []string{"/s/" + queue.NewEscrowToken(), "/s/" + queue.NewEscrowToken() + "/code"} {
		method := "GET"
		if strings.HasSuffix(u, "/code") {
			method = "POST"
		}
		if resp, got := do(t, c, method, f.srv.URL+u, url.Values{"csrf": {good}}); resp.StatusCode != 404 || got != gone {
			t.Errorf("%s %s: %d, not the neutral page:\n%s", method, u, resp.StatusCode, got)
		}
	}
}
