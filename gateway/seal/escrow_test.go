package seal

import (
	"context"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/gateway/scheduler"
	"github.com/sealgate/sealgate/queue"
)

type fakeEscrow struct {
	deposits []queue.EscrowDeposit
	events   []string
}

func (f *fakeEscrow) Deposit(d queue.EscrowDeposit, _ []byte) (string, string, error) {
	f.deposits = append(f.deposits, d)
	return "e1.1", "TOKEN-" + d.Recipient, nil
}

func (f *fakeEscrow) RecordFor(id, kind, _, detail string) error {
	f.events = append(f.events, id+" "+kind+" "+detail)
	return nil
}

func TestEscrowNoticeHoldsNothingOfTheContent(t *testing.T) {
	store := &fakeEscrow{}
	e := NewEscrow(EscrowOptions{Store: store, PublicURL: "https://secure.org.test/", Hostname: "gw.test",
		Organization: "Clinic <X>", Subject: "You have a secure message"})
	body := []byte("From: =?utf-8?q?Dr_J=C3=BCrgen?= <alice@org.test>\r\nTo: bob@dest.test\r\n" +
		"Subject: Lab results for Bob\r\nContent-Type: text/plain\r\n\r\nhaemoglobin 13.2\r\n")
	m := &queue.Message{ID: "q1", Envelope: queue.Envelope{From: "alice@org.test"}}
	act := e.Prepare(context.Background(), m, scheduler.Group{Method: "escrow", Rcpts: []string{"bob@dest.test"}}, scheduler.BytesBody(body))
	if act.Outcome != nil {
		t.Fatalf("outcome %+v", act.Outcome)
	}
	if _, ok := any(e).(scheduler.PerRecipient); !ok {
		t.Error("escrow is not a PerRecipient method")
	}
	out := string(sendBytes(act))
	for _, secret := range []string{"Lab results", "haemoglobin", "13.2"} {
		if strings.Contains(out, secret) {
			t.Errorf("the notice holds %q:\n%s", secret, out)
		}
	}
	msg, err := mail.ReadMessage(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if msg.Header.Get("Subject") != "You have a secure message" || msg.Header.Get("To") != "bob@dest.test" {
		t.Errorf("header %v", msg.Header)
	}
	if from, _ := (&mail.AddressParser{WordDecoder: &mime.WordDecoder{}}).Parse(msg.Header.Get("From")); from == nil || from.Address != "alice@org.test" {
		t.Errorf("From %q", msg.Header.Get("From"))
	}
	_, params, _ := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var parts []string
	for {
		p, err := mr.NextPart()
		if err != nil {
			break
		}
		b, _ := io.ReadAll(p) // quoted-printable decoded
		parts = append(parts, string(b))
	}
	if len(parts) != 2 {
		t.Fatalf("%d parts, want text and HTML", len(parts))
	}
	for i, p := range parts {
		if !strings.Contains(p, "https://secure.org.test/m/TOKEN-bob@dest.test") || !strings.Contains(p, "Dr Jürgen") {
			t.Errorf("part %d lacks the link or the sender:\n%s", i, p)
		}
	}
	if !strings.Contains(parts[1], "Clinic &lt;X&gt;") {
		t.Errorf("organisation not escaped in HTML:\n%s", parts[1])
	}
	if d := store.deposits[0]; d.Sender != "Dr Jürgen <alice@org.test>" || d.QueueID != "q1" {
		t.Errorf("deposit %+v", d)
	}
	act.Delivered([]queue.RcptOutcome{{Address: "bob@dest.test", Delivered: true, RemoteMTA: "mx.dest.test"}})
	if len(store.events) != 1 || store.events[0] != "e1.1 notice sent notice accepted by mx.dest.test" {
		t.Errorf("events %v", store.events)
	}

	e = NewEscrow(EscrowOptions{Store: store, PublicURL: "https://s.test", Subject: "Secure", SubjectInNotice: true})
	act = e.Prepare(context.Background(), m, scheduler.Group{Rcpts: []string{"bob@dest.test"}}, scheduler.BytesBody(body))
	if !strings.Contains(string(sendBytes(act)), "Subject: Secure: Lab results for Bob\r\n") {
		t.Errorf("subject_in_notice:\n%s", sendBytes(act))
	}
	act = e.Prepare(context.Background(), m, scheduler.Group{Rcpts: []string{"a@d.test", "b@d.test"}}, scheduler.BytesBody(body))
	if act.Outcome == nil || act.Send != nil {
		t.Error("a notice for two recipients was built")
	}
}
