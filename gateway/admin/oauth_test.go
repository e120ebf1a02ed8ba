package admin

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/gateway/submit"
)

// TestOAuthTokens: client credentials give a token with the key's scope;
// the password grant gives a send token for the user; wrong credentials
// are refused; a revoked token or key ends the token.
func TestOAuthTokens(t *testing.T) {
	s := openStore(t)
	hash, err := config.HashPassword("pw-alice")
	if err != nil {
		t.Fatal(err)
	}
	opsScope := "read"
	users := func() []config.User {
		return []config.User{{Username: "alice@org.test", PasswordHash: hash}, {Username: "ops", PasswordHash: hash, APIScope: opsScope}}
	}
	srv := serve(t, Options{Store: s, APIKeys: s, Users: users}, false)
	base := "http://" + srv.Listener.Addr().String()
	key, cred, _ := CreateAPIKey(s, NewAPIKey{Name: "dashboards", Scope: ScopeRead}, time.Now())
	id, secret, _ := strings.Cut(cred, ":")

	grant := func(form url.Values) (int, map[string]any) {
		resp, err := http.PostForm(base+"/oauth/token", form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	use := func(tok, path string) int {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	code, out := grant(url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}})
	tok, _ := out["access_token"].(string)
	if code != 200 || tok == "" || out["token_type"] != "Bearer" || out["expires_in"] != float64(900) || out["scope"] != "read" {
		t.Fatalf("client credentials: %d %v", code, out)
	}
	if got := use(tok, "/api/v1/queue"); got != 200 {
		t.Errorf("the token reads the queue: %d", got)
	}
	if got := use(tok, "/api/v1/apikeys"); got != 200 {
		t.Errorf("the token reads the key list: %d", got)
	}
	if code, out := grant(url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {"wrong"}}); code != 401 || out["error"] != "invalid_client" {
		t.Errorf("wrong secret: %d %v", code, out)
	}
	code, out = grant(url.Values{"grant_type": {"password"}, "username": {"alice@org.test"}, "password": {"pw-alice"}})
	utok, _ := out["access_token"].(string)
	if code != 200 || out["scope"] != "send" {
		t.Fatalf("password grant: %d %v", code, out)
	}
	if got := use(utok, "/api/v1/queue"); got != 403 {
		t.Errorf("a user's send token reads the queue: %d", got)
	}
	code, out = grant(url.Values{"grant_type": {"password"}, "username": {"ops"}, "password": {"pw-alice"}})
	if code != 200 || out["scope"] != "read" {
		t.Errorf("a user with api_scope read: %d %v", code, out)
	}
	opsTok, _ := out["access_token"].(string)
	if got := use(opsTok, "/api/v1/queue"); got != 200 {
		t.Errorf("the read user's token: %d", got)
	}
	opsScope = "admin" // a reload changed the user: the old token ends
	if got := use(opsTok, "/api/v1/queue"); got != 401 {
		t.Errorf("a token of a user whose scope changed: %d", got)
	}
	if code, out := grant(url.Values{"grant_type": {"password"}, "username": {"alice@org.test"}, "password": {"nope"}}); code != 400 || out["error"] != "invalid_grant" {
		t.Errorf("wrong password: %d %v", code, out)
	}
	if code, out := grant(url.Values{"grant_type": {"implicit"}}); code != 400 || out["error"] != "unsupported_grant_type" {
		t.Errorf("unknown grant: %d %v", code, out)
	}

	// Revoked token, then revoked key.
	resp, _ := http.PostForm(base+"/oauth/revoke", url.Values{"token": {utok}})
	resp.Body.Close()
	if got := use(utok, "/api/v1/messages/x"); got != 401 {
		t.Errorf("a revoked token: %d", got)
	}
	s.RevokeAPIKey(key.ID, time.Now())
	if got := use(tok, "/api/v1/queue"); got != 401 {
		t.Errorf("a token of a revoked key: %d", got)
	}
	if got := use("at_made-up", "/api/v1/queue"); got != 401 {
		t.Errorf("an unknown token: %d", got)
	}
}

// TestSignedRequests: a request signed with the key is taken once; a
// replay, a stale timestamp, a changed body or path are refused.
func TestSignedRequests(t *testing.T) {
	s := openStore(t)
	srv := serve(t, Options{Store: s, APIKeys: s}, false)
	base := "http://" + srv.Listener.Addr().String()
	_, cred, _ := CreateAPIKey(s, NewAPIKey{Name: "strict", Scope: ScopeAdmin}, time.Now())
	id, secret, _ := strings.Cut(cred, ":")
	hkey := sha256.Sum256([]byte(secret))
	sign := func(method, path, body string, ts time.Time, nonce string) string {
		bs := sha256.Sum256([]byte(body))
		mac := hmac.New(sha256.New, hkey[:])
		t := strconv.FormatInt(ts.Unix(), 10)
		mac.Write([]byte(method + "\n" + path + "\n" + t + "\n" + nonce + "\n" + hex.EncodeToString(bs[:])))
		return "key=" + id + ",t=" + t + ",nonce=" + nonce + ",v1=" + hex.EncodeToString(mac.Sum(nil))
	}
	send := func(method, path, body, sig string) int {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Sealgate-Signature", sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	now := time.Now()
	body := `{"name": "made by a signed request", "scope": "read"}`
	good := sign("POST", "/api/v1/apikeys", body, now, "n-1")
	if got := send("POST", "/api/v1/apikeys", body, good); got != 200 {
		t.Fatalf("a signed request: %d", got)
	}
	if got := send("POST", "/api/v1/apikeys", body, good); got != 401 {
		t.Errorf("the same request replayed: %d", got)
	}
	if got := send("POST", "/api/v1/apikeys", body, sign("POST", "/api/v1/apikeys", body, now.Add(-6*time.Minute), "n-2")); got != 401 {
		t.Errorf("a stale request: %d", got)
	}
	if got := send("POST", "/api/v1/apikeys", `{"name": "tampered", "scope": "admin"}`, sign("POST", "/api/v1/apikeys", body, now, "n-3")); got != 401 {
		t.Errorf("a changed body: %d", got)
	}
	if got := send("GET", "/api/v1/queue?limit=5", "", sign("GET", "/api/v1/queue?limit=1000", "", now, "n-4")); got != 401 {
		t.Errorf("a changed query: %d", got)
	}
	if got := send("GET", "/api/v1/queue?limit=5", "", sign("GET", "/api/v1/queue?limit=5", "", now, "n-5")); got != 200 {
		t.Errorf("a signed GET with a query: %d", got)
	}
}

// TestTokensExpire: a token is good for its lifetime, then refused.
func TestTokensExpire(t *testing.T) {
	ts := tokens{lifetime: time.Minute}
	now := time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC)
	tok, exp, _ := ts.issue(Principal{Name: "x", Scope: ScopeRead}, now)
	if !exp.Equal(now.Add(time.Minute)) {
		t.Errorf("expires %v", exp)
	}
	if _, ok := ts.lookup(tok, now.Add(59*time.Second)); !ok {
		t.Error("refused within its lifetime")
	}
	if _, ok := ts.lookup(tok, now.Add(61*time.Second)); ok {
		t.Error("taken after its lifetime")
	}
	if d, _, _ := (&tokens{}).issue(Principal{}, now); d == "" {
		t.Error("no token")
	}
}

// TestPasswordGrantSendsOnlyAsTheUser: a user's send token sends as the
// user's own address — whatever the case of its local part or domain,
// on either side — and as no other (403).
func TestPasswordGrantSendsOnlyAsTheUser(t *testing.T) {
	s := openStore(t)
	hash, err := config.HashPassword("pw")
	if err != nil {
		t.Fatal(err)
	}
	users := func() []config.User {
		return []config.User{{Username: "Alice@Org.TEST", PasswordHash: hash}, {Username: "ops", PasswordHash: hash}}
	}
	srv := serve(t, Options{Store: s, Users: users, Submit: submit.New(submit.Options{Spool: s})}, false)
	base := "http://" + srv.Listener.Addr().String()
	token := func(user string) string {
		t.Helper()
		resp, err := http.PostForm(base+"/oauth/token", url.Values{"grant_type": {"password"}, "username": {user}, "password": {"pw"}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			AccessToken string `json:"access_token"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.AccessToken == "" {
			t.Fatalf("password grant for %s: %d, %v", user, resp.StatusCode, err)
		}
		return out.AccessToken
	}
	send := func(tok, from string) (int, string) {
		t.Helper()
		body := `{"from": "` + from + `", "to": ["bob@dest.test"], "subject": "s", "text": "x"}`
		req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/messages", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(data)
	}
	alice := token("Alice@Org.TEST")
	for from, want := range map[string]int{
		"alice@org.test":           201,
		"Alice <ALICE@org.TEST>":   201,
		"aLiCe@ORG.test":           201,
		"bob@org.test":             403,
		"alice@org.test.evil.test": 403,
		"alice@sub.org.test":       403,
		"alice2@org.test":          403,
	} {
		if code, body := send(alice, from); code != want {
			t.Errorf("Alice@Org.TEST's token sending as %s: %d %s, want %d", from, code, body, want)
		}
	}
	// A user whose name is no address sends as nobody.
	if code, body := send(token("ops"), "ops@org.test"); code != 403 {
		t.Errorf("a token of user ops: %d %s, want 403", code, body)
	}
}
