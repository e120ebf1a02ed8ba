package admin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/gateway/submit"
)

// TestSendLimitsPerKey: a key made with its own messages a minute and
// bytes a message (through the API's client, as "api key create" on a
// running server makes it) is held to them, with 429 and Retry-After
// and 413, whichever way it presents itself; a key without them has the
// node's; a key's bytes a message does not raise the node's; a repeated
// idempotency key does not use up the quota.
func TestSendLimitsPerKey(t *testing.T) {
	s := openStore(t)
	intake := submit.New(submit.Options{Spool: s, MaxMessageBytes: 10000})
	srv := serve(t, Options{Store: s, APIKeys: s, Submit: intake, SendLimits: SendLimits{PerMinute: 100}}, false)
	c := NewAdminClient(srv.Listener.Addr().String(), testToken)
	newKey := func(k NewAPIKey) (APIKeyInfo, string) {
		t.Helper()
		k.Scope, k.Domains = ScopeSend, []string{"org.test"}
		info, cred, err := c.CreateAPIKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return info, cred
	}
	slow, slowCred := newKey(NewAPIKey{Name: "reminders", RatePerMinute: 2})
	_, smallCred := newKey(NewAPIKey{Name: "small", MaxMessageBytes: 1000})
	_, bigCred := newKey(NewAPIKey{Name: "big", MaxMessageBytes: 50000})
	_, plainCred := newKey(NewAPIKey{Name: "plain"})
	if slow.RatePerMinute != 2 || slow.MaxMessageBytes != 0 {
		t.Errorf("the key as made: %+v", slow)
	}
	keys, err := c.ListAPIKeys()
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]string{}
	for _, k := range keys {
		listed[k.Name] = fmt.Sprintf("%d/%d", k.RatePerMinute, k.MaxMessageBytes)
	}
	if listed["reminders"] != "2/0" || listed["small"] != "0/1000" || listed["plain"] != "0/0" {
		t.Errorf("listed limits: %v", listed)
	}

	send := func(auth, path, body string) (int, string, http.Header) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if strings.HasPrefix(auth, "at_") {
			req.Header.Set("Authorization", "Bearer "+auth)
		} else {
			req.Header.Set("X-API-Key", auth)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct{ Error string }
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out.Error, resp.Header
	}
	message := func(text, idem string) string {
		return fmt.Sprintf(`{"from": "noreply@org.test", "to": ["bob@dest.test"], "subject": "s", "text": %q, "idempotency_key": %q}`, text, idem)
	}

	// Messages a minute: the repeated key is answered without using the
	// quota, so the second new message still fits; the third does not.
	for i, step := range []struct {
		body string
		want int
	}{
		{message("x", "appt-1"), 201},
		{message("x", "appt-1"), 200},
		{message("x", "appt-1"), 200},
		{message("x", "appt-2"), 201},
		{message("x", "appt-3"), 429},
	} {
		code, msg, h := send(slowCred, "/api/v1/messages", step.body)
		if code != step.want {
			t.Fatalf("reminders key, send %d: %d %s, want %d", i, code, msg, step.want)
		}
		if code == 429 && (h.Get("Retry-After") == "" || !strings.Contains(msg, "limit of 2 messages a minute")) {
			t.Errorf("429 with Retry-After %q: %s", h.Get("Retry-After"), msg)
		}
	}
	if code, msg, _ := send(slowCred, "/api/v1/messages:batch", `{"messages": [`+message("x", "")+","+message("x", "")+","+message("x", "")+`]}`); code != 400 || !strings.Contains(msg, "limit of 2") {
		t.Errorf("a batch of 3 for a key of 2 a minute: %d %s", code, msg)
	}
	// In a batch too: of two messages with one idempotency key, one
	// counts.
	_, batcherCred := newKey(NewAPIKey{Name: "batcher", RatePerMinute: 2})
	twice := `{"messages": [` + message("x", "lab-7") + "," + message("x", "lab-7") + `]}`
	if code, msg, _ := send(batcherCred, "/api/v1/messages:batch", twice); code != 200 {
		t.Fatalf("a batch repeating its idempotency key: %d %s", code, msg)
	}
	for i, want := range []int{201, 429} {
		if code, msg, _ := send(batcherCred, "/api/v1/messages", message("x", "")); code != want {
			t.Errorf("batcher key, send %d after the batch: %d %s, want %d", i, code, msg, want)
		}
	}

	// A token of the key has the key's limit.
	id, secret, _ := strings.Cut(slowCred, ":")
	resp, err := http.PostForm(srv.URL+"/oauth/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}})
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if code, msg, _ := send(tok.AccessToken, "/api/v1/messages", message("x", "appt-4")); code != 429 {
		t.Errorf("the key's token past the key's limit: %d %s", code, msg)
	}
	// The node's limit of 100 a minute holds for a key without its own.
	for i := range 5 {
		if code, msg, _ := send(plainCred, "/api/v1/messages", message("x", "")); code != 201 {
			t.Fatalf("plain key, send %d: %d %s", i, code, msg)
		}
	}

	// Bytes a message.
	text := strings.Repeat("y", 1500)
	if code, msg, _ := send(smallCred, "/api/v1/messages", message(text, "")); code != 413 || !strings.Contains(msg, "this key's limit of 1000") {
		t.Errorf("1500 bytes for a key of 1000: %d %s", code, msg)
	}
	batch, _ := json.Marshal(map[string]any{"messages": []json.RawMessage{json.RawMessage(message("x", "")), json.RawMessage(message(text, ""))}})
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/messages:batch", strings.NewReader(string(batch)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", smallCred)
	resp, err = srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var results struct{ Results []batchResult }
	json.NewDecoder(resp.Body).Decode(&results)
	resp.Body.Close()
	if r := results.Results; resp.StatusCode != 200 || len(r) != 2 || r[0].Status != 201 || r[1].Status != 413 {
		t.Errorf("a batch with one message over the key's bytes: %d %+v", resp.StatusCode, r)
	}
	if code, msg, _ := send(plainCred, "/api/v1/messages", message(text, "")); code != 201 {
		t.Errorf("1500 bytes for a key without its own limit: %d %s", code, msg)
	}
	if code, msg, _ := send(bigCred, "/api/v1/messages", message(strings.Repeat("y", 12000), "")); code != 413 || !strings.Contains(msg, "the limit of 10000") {
		t.Errorf("12000 bytes for a key of 50000 on a node of 10000: %d %s", code, msg)
	}

	// A read key sends nothing, so it takes no send limits.
	if _, _, err := c.CreateAPIKey(NewAPIKey{Name: "dash", Scope: ScopeRead, RatePerMinute: 5}); err == nil || !strings.Contains(err.Error(), "read key") {
		t.Errorf("a read key with a rate: %v", err)
	}
	if _, _, err := CreateAPIKey(s, NewAPIKey{Name: "neg", Scope: ScopeSend, Domains: []string{"org.test"}, MaxMessageBytes: -1}, time.Now()); err == nil {
		t.Error("a negative limit was taken")
	}
}
