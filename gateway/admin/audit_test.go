package admin

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/gateway/audit"
	"github.com/sealgate/sealgate/gateway/submit"
	"github.com/sealgate/sealgate/queue"
)

// TestEveryCallIsAudited: every call to the admin listener leaves a
// record with its principal, method, path and status — a repeated
// idempotency key, a batch's refusals, /metrics, /debug/pprof/, a
// refused content type, a revoked token — except an accepted message,
// which its "received" entry records with the principal.
func TestEveryCallIsAudited(t *testing.T) {
	s := openStoreWith(t, queue.Options{Audit: audit.FromChange}) // with "received" entries
	trail := audit.New(s, nil, nil)
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "sealgate_up 1\n") })
	srv := serve(t, Options{Store: s, APIKeys: s, Audit: trail, Metrics: metrics, Submit: submit.New(submit.Options{Spool: s})}, true)
	base := "http://" + srv.Listener.Addr().String()
	_, sendCred, err := CreateAPIKey(s, NewAPIKey{Name: "ehr", Scope: ScopeSend, Domains: []string{"org.test"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	sendKey, _, _ := strings.Cut(sendCred, ":")
	_, readCred, _ := CreateAPIKey(s, NewAPIKey{Name: "dashboards", Scope: ScopeRead}, time.Now())
	call := func(method, path, ct, body, cred string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		if cred == testToken {
			req.Header.Set("Authorization", "Bearer "+cred)
		} else {
			req.Header.Set("X-API-Key", cred)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(data)
	}
	good := `{"from": "noreply@org.test", "to": ["bob@dest.test"], "subject": "s", "text": "x"}`
	bad := `{"from": "noreply@org.test", "to": ["not an address"], "subject": "s", "text": "x"}`
	repeated := `{"from": "noreply@org.test", "to": ["bob@dest.test"], "subject": "s", "text": "x", "idempotency_key": "appt-1"}`

	steps := []struct {
		method, path, ct, body, cred string
		want                         int
	}{
		{"POST", "/api/v1/messages", "application/json", repeated, sendCred, 201},
		{"POST", "/api/v1/messages", "application/json", repeated, sendCred, 200},
		{"POST", "/api/v1/messages:batch", "application/json", `{"messages": [` + bad + "," + bad + `]}`, sendCred, 200},
		{"POST", "/api/v1/messages:batch", "application/json", `{"messages": [` + good + "," + bad + "," + repeated + `]}`, sendCred, 200},
		{"POST", "/api/v1/messages:batch", "application/json", `{"messages": [` + good + `]}`, sendCred, 200},
		{"GET", "/metrics", "", "", readCred, 200},
		{"GET", "/debug/pprof/", "", "", testToken, 200},
		{"POST", "/api/v1/queue/retry", "text/plain", "", testToken, 415},
	}
	for i, c := range steps {
		if code, body := call(c.method, c.path, c.ct, c.body, c.cred); code != c.want {
			t.Fatalf("step %d, %s %s: %d %s, want %d", i, c.method, c.path, code, body, c.want)
		}
	}
	// A token revoked by its holder.
	resp, err := http.PostForm(base+"/oauth/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {sendKey}, "client_secret": {strings.TrimPrefix(sendCred, sendKey+":")}})
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	err = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	resp, err = http.PostForm(base+"/oauth/revoke", url.Values{"token": {tok.AccessToken}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	calls, err := trail.Search(audit.Filter{Type: "admin"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range calls {
		who, _, _ := strings.Cut(c.Actor, ", from 127.0.0.1:")
		got = append(got, c.Type+" by "+who+": "+c.Detail)
	}
	want := []string{
		"admin.api-call by API key " + sendKey + " (ehr): POST /api/v1/messages → 200 (a repeated idempotency key: nothing queued)",
		"admin.api-call by API key " + sendKey + " (ehr): POST /api/v1/messages:batch → 200 (2 messages: 0 queued, 0 repeated idempotency keys, 2 refused (2×400))",
		"admin.api-call by API key " + sendKey + " (ehr): POST /api/v1/messages:batch → 200 (3 messages: 1 queued, 1 repeated idempotency keys, 1 refused (1×400))",
		"admin.api-call by API key " + strings.Split(readCred, ":")[0] + " (dashboards): GET /metrics → 200",
		"admin.api-call by admin token: GET /debug/pprof/ → 200",
		"admin.api-call by admin token: POST /api/v1/queue/retry → 415",
		"admin.oauth-token by API key " + sendKey + " (ehr): token issued (client_credentials), valid until ",
		"admin.oauth-revoke by API key " + sendKey + " (ehr): token revoked",
	}
	if len(got) != len(want) {
		t.Fatalf("%d admin records, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("record %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
	if calls[0].QueueID == "" {
		t.Error("the repeated idempotency key's record does not name the message it answered with")
	}

	// Each queued message is on record once, by its "received" entry,
	// with the principal that sent it.
	received, err := trail.Search(audit.Filter{Type: "received"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, r := range received {
		if r.Client == nil || r.Client.AuthUser != "API key "+sendKey+" (ehr)" || ids[r.QueueID] {
			t.Errorf("received entry %+v", r.Record)
		}
		ids[r.QueueID] = true
	}
	if len(received) != 3 || !ids[calls[0].QueueID] {
		t.Errorf("%d received entries (want 3: the first send, one per batch with a new message); the first send's %s among them: %v",
			len(received), calls[0].QueueID, ids[calls[0].QueueID])
	}
}
