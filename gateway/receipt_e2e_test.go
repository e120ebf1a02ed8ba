package gateway_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/gateway/report"
	"github.com/sealgate/sealgate/internal/testutil"
	"github.com/sealgate/sealgate/queue"
)

// TestSecurityReceiptMatchesTheAttemptRecords: a rule asks for a
// receipt; once both recipients are final the sender gets one mail
// whose JSON part says, per recipient, what the attempt records say.
func TestSecurityReceiptMatchesTheAttemptRecords(t *testing.T) {
	e := newE2E(t, "policy:\n  rules:\n    - name: receipts-for-alice\n      match: {from: [alice@org.test]}\n      receipt: true\n      continue: true\n")
	e.destination("dest.test", "127.0.0.2", testutil.SinkOptions{TLS: true, CA: e.ca,
		RcptReply: func(rcpt string) *smtp.SMTPError {
			if strings.HasPrefix(rcpt, "nobody@") {
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
			}
			return nil
		}})
	senderBox := e.destination("org.test", "127.0.0.3", testutil.SinkOptions{})
	id := e.send("alice@org.test", []string{"bob@dest.test", "nobody@dest.test"}, message("results", "secret body"))
	e.waitState(id, "bob@dest.test", queue.StateDelivered)
	m := e.waitState(id, "nobody@dest.test", queue.StateBounced)

	var receipt *mail.Message
	deadline := time.Now().Add(20 * time.Second)
	for receipt == nil {
		for _, got := range senderBox.Messages() {
			msg, err := mail.ReadMessage(bytes.NewReader(got.Data))
			if err == nil && strings.HasPrefix(msg.Header.Get("Subject"), "Security receipt") {
				receipt = msg
				if got.From != "" || got.To[0] != "alice@org.test" {
					t.Errorf("receipt envelope %q → %v, want <> → alice", got.From, got.To)
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no receipt; the sender got %d mails", len(senderBox.Messages()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, params, _ := mime.ParseMediaType(receipt.Header.Get("Content-Type"))
	mr := multipart.NewReader(receipt.Body, params["boundary"])
	var text string
	var rec report.Receipt
	for {
		p, err := mr.NextPart()
		if err != nil {
			break
		}
		data, _ := io.ReadAll(p)
		switch {
		case strings.HasPrefix(p.Header.Get("Content-Type"), "text/plain"):
			text = string(data)
		case strings.HasPrefix(p.Header.Get("Content-Type"), "application/json"):
			if p.Header.Get("Content-Transfer-Encoding") != "base64" {
				t.Fatalf("receipt.json encoded as %q", p.Header.Get("Content-Transfer-Encoding"))
			}
			plain, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(string(data), "\r\n", ""))
			if err == nil {
				err = json.Unmarshal(plain, &rec)
			}
			if err != nil {
				t.Fatalf("receipt.json: %v\n%s", err, data)
			}
		}
	}
	if rec.QueueID != id || len(rec.Recipients) != 2 {
		t.Fatalf("receipt %+v", rec)
	}
	for _, r := range rec.Recipients {
		var att *queue.Attempt
		for _, ev := range m.Events {
			if ev.Attempt != nil && len(ev.Attempt.Recipients) > 0 && strings.Contains(strings.Join(ev.Attempt.Recipients, " "), r.Recipient) {
				att = ev.Attempt
			}
		}
		if att == nil {
			t.Fatalf("%s: no attempt record", r.Recipient)
		}
		reply := att.Reply
		if r.State != "delivered" {
			reply = m.Recipients[1].LastError
		}
		if r.TLSVersion != att.TLSVersion || r.CertVerified != att.CertVerified || r.RemoteMTA != att.MXHost || r.Reply != reply {
			t.Errorf("%s: receipt %+v, attempt %+v", r.Recipient, r, att)
		}
		switch r.Recipient {
		case "bob@dest.test":
			if r.State != "delivered" || !r.CertVerified || r.TLSVersion != "TLS1.3" {
				t.Errorf("bob: %+v", r)
			}
		case "nobody@dest.test":
			if r.State != "bounced" || r.Status != "5.1.1" {
				t.Errorf("nobody: %+v", r)
			}
		}
	}
	if !strings.Contains(text, "<bob@dest.test>: delivered; over TLS1.3 to mx.dest.test, certificate verified") ||
		!strings.Contains(text, "<nobody@dest.test>: NOT delivered (bounced 5.1.1)") || strings.Contains(text, "secret body") {
		t.Errorf("receipt text:\n%s", text)
	}
	if got, _ := e.gw.Store().Get(id); got == nil || got.ReceiptID == "" {
		t.Errorf("the message does not name its receipt: %+v", got)
	}
}
