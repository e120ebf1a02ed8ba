package gateway_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/gateway/admin"
	"github.com/sealgate/sealgate/internal/testutil"
	"github.com/sealgate/sealgate/queue"
)

// TestSendAPIEndToEnd: JSON with an attachment and raw messages reach
// the destination through the same policy (secure: true gets the
// escalation chain); Bcc stays out of the message; a repeated
// idempotency key queues once; a sender domain the key may not use is
// 403; a batch answers per message; the key's limit is 429; a key sees
// only its own messages' status.
func TestSendAPIEndToEnd(t *testing.T) {
	e := newE2E(t, "api: {messages_per_minute: 8}\npolicy: {escalation_chain: [tls-verified, bounce]}\n")
	sink := e.destination("dest.test", "127.0.0.2", testutil.SinkOptions{TLS: true, CA: e.ca})
	_, cred, err := admin.CreateAPIKey(e.gw.Store(), admin.NewAPIKey{Name: "ehr", Scope: admin.ScopeSend, Domains: []string{"org.test"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, other, _ := admin.CreateAPIKey(e.gw.Store(), admin.NewAPIKey{Name: "crm", Scope: admin.ScopeSend, Domains: []string{"else.test"}}, time.Now())
	post := func(path, ct, body, key string, header ...string) (int, map[string]any, http.Header) {
		t.Helper()
		return e.postAPI(path, ct, body, key, header...)
	}
	get := func(path, key string) (int, []byte) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+e.gw.AdminAddr()+path, nil)
		req.Header.Set("X-API-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, data
	}

	// 1. JSON with an attachment.
	code, out, _ := post("/api/v1/messages", "application/json", `{"from": "Clinic <noreply@org.test>", "to": ["bob@dest.test"],
		"subject": "Your results", "text": "See the attached report.",
		"attachments": [{"filename": "report.pdf", "content_type": "application/pdf", "content": "JVBERi0xLjQK"}]}`, cred)
	id, _ := out["id"].(string)
	if code != http.StatusCreated || id == "" {
		t.Fatalf("JSON send: %d %v", code, out)
	}
	e.waitState(id, "bob@dest.test", queue.StateDelivered)
	got := sink.WaitMessages(t, 1, 20*time.Second)[0]
	for _, want := range []string{"with HTTPS id " + id, "Subject: Your results", "See the attached report.", "filename=report.pdf", "JVBERi0xLjQK"} {
		if !bytes.Contains(got.Data, []byte(want)) {
			t.Errorf("delivered JSON message lacks %q:\n%s", want, got.Data)
		}
	}

	// 2. Raw, with a Bcc recipient.
	raw := "From: noreply@org.test\r\nTo: bob@dest.test\r\nBcc: carol@dest.test\r\nSubject: raw\r\n\r\nraw body\r\n"
	code, out, _ = post("/api/v1/messages", "message/rfc822", raw, cred)
	rawID, _ := out["id"].(string)
	if code != http.StatusCreated {
		t.Fatalf("raw send: %d %v", code, out)
	}
	e.waitState(rawID, "carol@dest.test", queue.StateDelivered)
	for _, m := range sink.WaitMessages(t, 2, 20*time.Second)[1:] {
		if bytes.Contains(m.Data, []byte("Bcc:")) || bytes.Contains(m.Data, []byte("carol@")) || !bytes.Contains(m.Data, []byte("Message-ID: <")) {
			t.Errorf("raw message as delivered:\n%s", m.Data)
		}
	}

	// 3. secure: true reaches the escalation chain.
	code, out, _ = post("/api/v1/messages", "application/json", `{"from": "noreply@org.test", "to": ["dave@dest.test"], "subject": "lab", "text": "x", "secure": true}`, cred)
	secID, _ := out["id"].(string)
	if code != http.StatusCreated {
		t.Fatalf("secure send: %d %v", code, out)
	}
	if m := e.waitState(secID, "dave@dest.test", queue.StateDelivered); strings.Join(m.Recipients[0].Chain, ",") != "tls-verified,bounce" ||
		m.Recipients[0].By != "X-Sealgate-Escalate: encrypt" {
		t.Errorf("secure: true gave %+v", m.Recipients[0])
	}

	// 4. The same idempotency key twice: one message.
	body := `{"from": "noreply@org.test", "to": ["erin@dest.test"], "subject": "reminder", "text": "x", "idempotency_key": "appt-42"}`
	code1, out1, _ := post("/api/v1/messages", "application/json", body, cred)
	code2, out2, _ := post("/api/v1/messages", "application/json", body, cred)
	if code1 != http.StatusCreated || code2 != http.StatusOK || out1["id"] != out2["id"] || out2["duplicate"] != true {
		t.Errorf("idempotency: %d %v, then %d %v", code1, out1, code2, out2)
	}

	// 5. A sender domain the key may not use.
	if code, out, _ := post("/api/v1/messages", "application/json", `{"from": "x@evil.test", "to": ["bob@dest.test"], "subject": "s", "text": "x"}`, cred); code != http.StatusForbidden {
		t.Errorf("foreign sender domain: %d %v", code, out)
	}

	// 6. A batch with one bad message.
	code, out, _ = post("/api/v1/messages:batch", "application/json", `{"messages": [
		{"from": "noreply@org.test", "to": ["f1@dest.test"], "subject": "a", "text": "x"},
		{"from": "noreply@org.test", "to": ["not an address"], "subject": "b", "text": "x"},
		{"from": "noreply@org.test", "to": ["f3@dest.test"], "subject": "c", "text": "x"}]}`, cred)
	results, _ := out["results"].([]any)
	if code != http.StatusOK || len(results) != 3 {
		t.Fatalf("batch: %d %v", code, out)
	}
	for i, want := range []float64{201, 400, 201} {
		if r := results[i].(map[string]any); r["status"] != want {
			t.Errorf("batch item %d: %v, want %v", i, r, want)
		}
	}

	// 7. Past the key's limit (8 messages: the repeated idempotency key
	// queued nothing and does not count): 429 with Retry-After.
	fresh := `{"from": "noreply@org.test", "to": ["erin@dest.test"], "subject": "one more", "text": "x"}`
	if code, _, h := post("/api/v1/messages", "application/json", fresh, cred); code != http.StatusTooManyRequests || h.Get("Retry-After") == "" {
		t.Errorf("past the limit: %d, Retry-After %q", code, h.Get("Retry-After"))
	}

	// 8. Status: the key's own message, not another key's.
	code, data := get("/api/v1/messages/"+id, cred)
	var st admin.MessageStatus
	if json.Unmarshal(data, &st); code != 200 || st.ID != id || len(st.Recipients) != 1 || st.Recipients[0].State != "delivered" {
		t.Errorf("status: %d %s", code, data)
	}
	if code, _ := get("/api/v1/messages/"+id, other); code != http.StatusNotFound {
		t.Errorf("another key's message: %d", code)
	}
	if code, _ := get("/api/v1/queue", cred); code != http.StatusForbidden {
		t.Errorf("a send key reading the queue: %d", code)
	}
}

// TestExplainAndDomainCheckThroughTheAPI: a read key asks the live
// policy what it would do with a tagged message, and has a domain
// probed.
func TestExplainAndDomainCheckThroughTheAPI(t *testing.T) {
	e := newE2E(t, "policy: {escalation_chain: [tls-verified, bounce]}\n")
	e.destination("dest.test", "127.0.0.2", testutil.SinkOptions{TLS: true, CA: e.ca})
	_, cred, err := admin.CreateAPIKey(e.gw.Store(), admin.NewAPIKey{Name: "dashboards", Scope: admin.ScopeRead}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+e.gw.AdminAddr()+path, nil)
		req.Header.Set("X-API-Key", cred)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	code, out := get("/api/v1/policy/explain?from=a@org.test&to=bob@dest.test&subject=%5Bsecure%5D+results")
	rcpts, _ := out["recipients"].([]any)
	if code != 200 || len(rcpts) != 1 {
		t.Fatalf("explain: %d %v", code, out)
	}
	if r := rcpts[0].(map[string]any); r["by"] != "tag [secure]" || fmt.Sprint(r["chain"]) != "[tls-verified bounce]" {
		t.Errorf("explain: %v", r)
	}
	code, out = get("/api/v1/domains/dest.test/check")
	if code != 200 || out["tls_version"] != "TLS1.3" || !strings.HasPrefix(fmt.Sprint(out["delivery"]), "over TLS1.3") {
		t.Errorf("domain check: %d %v", code, out)
	}
}

// TestSendAPIRefusesWhatAKeyMayNotSay: the Idempotency-Key header holds
// for JSON too; a raw message with two authors (or a Sender) is refused,
// so a key cannot speak for another domain; a batch that can never fit
// the key's limit is 400, not an endless 429.
func TestSendAPIRefusesWhatAKeyMayNotSay(t *testing.T) {
	e := newE2E(t, "api: {messages_per_minute: 4}\n")
	e.destination("dest.test", "127.0.0.2", testutil.SinkOptions{TLS: true, CA: e.ca})
	_, cred, err := admin.CreateAPIKey(e.gw.Store(), admin.NewAPIKey{Name: "ehr", Scope: admin.ScopeSend, Domains: []string{"org.test"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	post := func(path, ct, body string, header ...string) (int, map[string]any) {
		t.Helper()
		code, out, _ := e.postAPI(path, ct, body, cred, header...)
		return code, out
	}
	body := `{"from": "noreply@org.test", "to": ["bob@dest.test"], "subject": "s", "text": "x"}`
	c1, o1 := post("/api/v1/messages", "application/json", body, "Idempotency-Key", "k-1")
	c2, o2 := post("/api/v1/messages", "application/json", body, "Idempotency-Key", "k-1")
	if c1 != 201 || c2 != 200 || o1["id"] != o2["id"] {
		t.Errorf("Idempotency-Key header with JSON: %d %v, %d %v", c1, o1, c2, o2)
	}
	for name, raw := range map[string]string{
		"two From fields":    "From: a@org.test\r\nFrom: ceo@bank.test\r\nTo: bob@dest.test\r\nSubject: s\r\n\r\nx\r\n",
		"two From addresses": "From: a@org.test, ceo@bank.test\r\nTo: bob@dest.test\r\nSubject: s\r\n\r\nx\r\n",
	} {
		if code, out := post("/api/v1/messages", "message/rfc822", raw); code != 400 {
			t.Errorf("%s: %d %v", name, code, out)
		}
	}
	batch := `{"messages": [` + strings.Repeat(body+",", 4) + body + `]}`
	if code, out := post("/api/v1/messages:batch", "application/json", batch); code != 400 || !strings.Contains(fmt.Sprint(out["error"]), "can never fit") {
		t.Errorf("a batch over the limit: %d %v", code, out)
	}
}

// TestSendAPISizeAndBatchLimits: a message over inbound.max_message_bytes
// is 413 — alone (JSON or raw) and as one item of a batch, whose other
// items are queued — and a batch of more than 500 messages is 400.
func TestSendAPISizeAndBatchLimits(t *testing.T) {
	e := newE2E(t, "inbound: {max_message_bytes: 4096}\n")
	_, cred, err := admin.CreateAPIKey(e.gw.Store(), admin.NewAPIKey{Name: "ehr", Scope: admin.ScopeSend, Domains: []string{"org.test"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	post := func(path, ct, body string) (int, map[string]any) {
		t.Helper()
		code, out, _ := e.postAPI(path, ct, body, cred)
		return code, out
	}
	small := `{"from": "noreply@org.test", "to": ["bob@dest.test"], "subject": "s", "text": "x"}`
	big := `{"from": "noreply@org.test", "to": ["bob@dest.test"], "subject": "s", "text": "` + strings.Repeat("y", 5000) + `"}`
	if code, out := post("/api/v1/messages", "application/json", big); code != http.StatusRequestEntityTooLarge {
		t.Errorf("JSON over the limit: %d %v", code, out)
	}
	raw := "From: noreply@org.test\r\nTo: bob@dest.test\r\nSubject: s\r\n\r\n" + strings.Repeat("y", 70) + strings.Repeat("\r\n"+strings.Repeat("y", 70), 70) + "\r\n"
	if code, out := post("/api/v1/messages", "message/rfc822", raw); code != http.StatusRequestEntityTooLarge {
		t.Errorf("raw over the limit: %d %v", code, out)
	}
	code, out := post("/api/v1/messages:batch", "application/json", `{"messages": [`+small+","+big+","+small+`]}`)
	results, _ := out["results"].([]any)
	if code != http.StatusOK || len(results) != 3 {
		t.Fatalf("batch with one message over the limit: %d %v", code, out)
	}
	for i, want := range []float64{201, 413, 201} {
		if r := results[i].(map[string]any); r["status"] != want {
			t.Errorf("batch item %d: %v, want status %v", i, r, want)
		}
	}
	sent := func() int { // the messages the key queued (not the DSNs of their bounces)
		t.Helper()
		msgs, err := e.gw.Store().List()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, m := range msgs {
			if m.Envelope.From == "noreply@org.test" {
				n++
			}
		}
		return n
	}
	if n := sent(); n != 2 {
		t.Errorf("%d messages queued, want the batch's 2", n)
	}

	over := `{"messages": [` + strings.Repeat(small+",", 500) + small + `]}`
	if code, out := post("/api/v1/messages:batch", "application/json", over); code != http.StatusBadRequest || !strings.Contains(fmt.Sprint(out["error"]), "1 to 500") {
		t.Errorf("a batch of 501: %d %v", code, out)
	}
	if n := sent(); n != 2 {
		t.Errorf("after the batch of 501, %d messages queued, want 2", n)
	}
}

// postAPI POSTs body to the node's admin listener with the API key and
// extra header pairs, and returns the status, the JSON answer and the
// response's header.
func (e *e2e) postAPI(path, ct, body, key string, header ...string) (int, map[string]any, http.Header) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+e.gw.AdminAddr()+path, strings.NewReader(body))
	req.Header.Set("Content-Type", ct)
	req.Header.Set("X-API-Key", key)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out, resp.Header
}
