package admin

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/gateway/audit"
)

// TestAPIKeysEveryWayAndEveryRefusal: a key is accepted as X-API-Key,
// Bearer and Basic; its scope decides (403 otherwise); a wrong or
// revoked key is 401; a client that keeps failing gets 429; and every
// call is in the audit trail with its principal.
func TestAPIKeysEveryWayAndEveryRefusal(t *testing.T) {
	s := openStore(t)
	trail := audit.New(s, nil, nil)
	srv := serve(t, Options{Store: s, APIKeys: s, Audit: trail}, false)
	base := "http://" + srv.Listener.Addr().String()
	reader, readCred, err := CreateAPIKey(s, NewAPIKey{Name: "dashboards", Scope: ScopeRead}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, adminCred, _ := CreateAPIKey(s, NewAPIKey{Name: "ops scripts", Scope: ScopeAdmin}, time.Now())
	_, sendCred, _ := CreateAPIKey(s, NewAPIKey{Name: "ehr", Scope: ScopeSend, Domains: []string{"org.test"}}, time.Now())
	if _, _, err := CreateAPIKey(s, NewAPIKey{Name: "x", Scope: "superuser"}, time.Now()); err == nil {
		t.Error("a key with an unknown scope was made")
	}
	id := enqueue(t, s, "a@org.test", "b@dest.test")

	call := func(method, path string, set func(*http.Request)) int {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader("{}"))
		req.Header.Set("Content-Type", "application/json")
		set(req)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	apiKey := func(c string) func(*http.Request) { return func(r *http.Request) { r.Header.Set("X-API-Key", c) } }
	bearer := func(c string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+c) }
	}
	basic := func(c string) func(*http.Request) {
		return func(r *http.Request) {
			r.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(c)))
		}
	}
	for name, c := range map[string]struct {
		method, path string
		set          func(*http.Request)
		want         int
	}{
		"read key as X-API-Key":           {"GET", "/api/v1/queue", apiKey(readCred), 200},
		"read key as Bearer":              {"GET", "/api/v1/queue/" + id, bearer(readCred), 200},
		"read key as Basic":               {"GET", "/api/v1/stats", basic(readCred), 200},
		"read key may not hold":           {"POST", "/api/v1/queue/" + id + "/hold", apiKey(readCred), 403},
		"send key may not read the queue": {"GET", "/api/v1/queue", apiKey(sendCred), 403},
		"admin key holds":                 {"POST", "/api/v1/queue/" + id + "/hold", basic(adminCred), 200},
		"the CLI's token":                 {"GET", "/api/v1/queue", bearer(testToken), 200},
		"no credentials":                  {"GET", "/api/v1/queue", func(*http.Request) {}, 401},
		"wrong secret":                    {"GET", "/api/v1/queue", apiKey(reader.ID + ":nope"), 401},
		"unknown key":                     {"GET", "/api/v1/queue", apiKey("sk0000:nope"), 401},
	} {
		if got := call(c.method, c.path, c.set); got != c.want {
			t.Errorf("%s: %d, want %d", name, got, c.want)
		}
	}

	// Every call is on record with who made it.
	calls, err := trail.Search(audit.Filter{Type: "admin.api-call"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var read, hold, refused bool
	for _, c := range calls {
		read = read || strings.HasPrefix(c.Actor, "API key "+reader.ID+" (dashboards), from 127.0.0.1:") && c.Detail == "GET /api/v1/queue → 200"
		hold = hold || strings.Contains(c.Actor, "(ops scripts)") && strings.HasSuffix(c.Detail, "/hold → 200")
		refused = refused || strings.Contains(c.Actor, "(ehr)") && c.Detail == "GET /api/v1/queue → 403"
	}
	if !read || !hold || !refused || len(calls) != 7 {
		t.Errorf("%d calls on record (want 7); a read %v, the admin key's hold %v, the send key's refusal %v", len(calls), read, hold, refused)
	}

	// Revoked: refused at once.
	if err := s.RevokeAPIKey(reader.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := call("GET", "/api/v1/queue", apiKey(readCred)); got != 401 {
		t.Errorf("a revoked key: %d", got)
	}
	// A client that keeps failing is refused for a while; a good
	// credential still passes (a web page must not lock the CLI out).
	for range failLimit {
		call("GET", "/api/v1/queue", apiKey("sk0000:guess"))
	}
	if got := call("GET", "/api/v1/queue", apiKey("sk0000:guess")); got != http.StatusTooManyRequests {
		t.Errorf("after %d failures: %d, want 429", failLimit, got)
	}
	if got := call("GET", "/api/v1/queue", func(*http.Request) {}); got != http.StatusTooManyRequests {
		t.Errorf("after %d failures, no credentials: %d, want 429", failLimit, got)
	}
	if got := call("GET", "/api/v1/queue", apiKey(adminCred)); got != http.StatusOK {
		t.Errorf("a good credential from the blocked address: %d, want 200", got)
	}
}

// TestListsPageWithACursor: ?limit= pages a list in a stable order and
// Next-After names where the next page starts ("" at the end).
func TestListsPageWithACursor(t *testing.T) {
	s := openStore(t)
	srv := serve(t, Options{Store: s, APIKeys: s}, false)
	for _, n := range []string{"a", "b", "c"} {
		if _, _, err := CreateAPIKey(s, NewAPIKey{Name: n, Scope: ScopeRead}, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	page := func(q string) ([]APIKeyInfo, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+srv.Listener.Addr().String()+"/api/v1/apikeys"+q, nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var keys []APIKeyInfo
		json.NewDecoder(resp.Body).Decode(&keys)
		return keys, resp.Header.Get("Next-After")
	}
	all, _ := page("")
	first, next := page("?limit=2")
	rest, end := page("?limit=2&after=" + next)
	if len(all) != 3 || len(first) != 2 || next != first[1].ID || len(rest) != 1 || end != "" || rest[0].ID == first[0].ID || rest[0].ID == first[1].ID {
		t.Errorf("pages %v / %v (next %q) / %v (next %q)", all, first, next, rest, end)
	}
}

// TestNotFoundSaysWhatIsMissing: each route's 404 names what it did not
// find — a domain's TLS history, an API key, a message.
func TestNotFoundSaysWhatIsMissing(t *testing.T) {
	s := openStore(t)
	srv := serve(t, Options{Store: s, APIKeys: s}, false)
	for path, want := range map[string]string{
		"/api/v1/domains/nowhere.test/reset": "no TLS history for nowhere.test",
		"/api/v1/apikeys/sk00/revoke":        "no such API key sk00",
		"/api/v1/queue/00ff/hold":            "no such message",
	} {
		code, body := do(t, srv, http.MethodPost, path)
		var e struct{ Error string }
		json.Unmarshal([]byte(body), &e)
		if code != http.StatusNotFound || e.Error != want {
			t.Errorf("POST %s: %d %q, want 404 %q", path, code, e.Error, want)
		}
	}
}

// TestMetricsAndDescriptionNeedARead: GET /metrics and GET
// /api/v1/openapi.yaml answer a read key, refuse a send key (403) and a
// request without credentials (401).
func TestMetricsAndDescriptionNeedARead(t *testing.T) {
	s := openStore(t)
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("sealgate_up 1\n")) })
	srv := serve(t, Options{Store: s, APIKeys: s, Metrics: metrics}, false)
	_, readCred, err := CreateAPIKey(s, NewAPIKey{Name: "prometheus", Scope: ScopeRead}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, sendCred, _ := CreateAPIKey(s, NewAPIKey{Name: "ehr", Scope: ScopeSend, Domains: []string{"org.test"}}, time.Now())
	for _, path := range []string{"/metrics", "/api/v1/openapi.yaml"} {
		for cred, want := range map[string]int{readCred: 200, sendCred: 403, "": 401} {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
			if cred != "" {
				req.Header.Set("X-API-Key", cred)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("GET %s with %q: %d, want %d", path, cred, resp.StatusCode, want)
			}
			if want == 200 && !strings.Contains(string(body), map[string]string{"/metrics": "sealgate_up 1", "/api/v1/openapi.yaml": "openapi: 3.1"}[path]) {
				t.Errorf("GET %s with a read key: %s", path, body)
			}
		}
	}
}
