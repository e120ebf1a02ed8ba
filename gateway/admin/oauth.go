package admin

import (
	"bytes"
	"cmp"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/internal/mailtext"
	"github.com/sealgate/sealgate/queue"
)

// OAuth 2.0 tokens and signed requests.
//
// POST /oauth/token (RFC 6749) gives a bearer token for
//   - grant_type=client_credentials: client_id and client_secret (form
//     fields or HTTP Basic) are an API key's ID and secret; the token has
//     the key's scope and ends when the key is revoked;
//   - grant_type=password: username and password of inbound.auth.users;
//     the token's scope is the user's api_scope: send (the default), for
//     the user's own address only, or read or admin.
// Tokens live api.token_lifetime (15 minutes) and POST /oauth/revoke
// (RFC 7009) ends one early. They are
// kept in memory: a restart ends them, and the client asks again.
//
// A signed request carries
//   Sealgate-Signature: key=ID,t=UNIX,nonce=N,v1=HEX
// with HEX = HMAC-SHA256(SHA-256(secret), METHOD "\n" PATH?QUERY "\n" t "\n" N "\n" hex(SHA-256(body))):
// the server keeps only the SHA-256 of a key's secret, which is the HMAC
// key, so the secret itself never crosses the wire. A request outside
// ±5 minutes of the server's clock, or whose nonce was seen, is refused.

const (
	defaultTokenLifetime = 15 * time.Minute
	signedWindow         = 5 * time.Minute
)

type token struct {
	p       Principal
	expires time.Time
}

// tokens are the issued bearer tokens, by SHA-256 of the token.
type tokens struct {
	mu       sync.Mutex
	m        map[string]token
	lifetime time.Duration
	shared   TokenStore // a fleet's: tokens good on every node; nil: this node's memory
	logger   *slog.Logger
}

// TokenStore keeps a fleet's access tokens (pgstore): by the hash of
// each token, the principal as opaque bytes, until it expires.
type TokenStore interface {
	PutToken(hash string, principal []byte, expires time.Time) error
	Token(hash string, now time.Time) (principal []byte, ok bool, err error)
	DeleteToken(hash string) error
}

func (ts *tokens) issue(p Principal, now time.Time) (string, time.Time, error) {
	b := make([]byte, 32)
	rand.Read(b)
	tok := "at_" + base64.RawURLEncoding.EncodeToString(b)
	exp := now.Add(cmp.Or(ts.lifetime, defaultTokenLifetime))
	if ts.shared != nil {
		data, err := json.Marshal(p)
		if err != nil {
			return "", exp, err
		}
		return tok, exp, ts.shared.PutToken(tokenHash(tok), data, exp)
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.m == nil {
		ts.m = map[string]token{}
	}
	if len(ts.m) >= maxTokens/2 { // sweep only when it matters
		var oldest string
		for k, t := range ts.m {
			if now.After(t.expires) {
				delete(ts.m, k)
			} else if oldest == "" || t.expires.Before(ts.m[oldest].expires) {
				oldest = k
			}
		}
		if len(ts.m) >= maxTokens {
			delete(ts.m, oldest)
		}
	}
	ts.m[tokenHash(tok)] = token{p: p, expires: exp}
	return tok, exp, nil
}

// maxTokens bounds the tokens alive at once: past it, issuing one ends
// the oldest.
const maxTokens = 100000

func (ts *tokens) lookup(tok string, now time.Time) (Principal, bool) {
	if ts.shared != nil {
		data, ok, err := ts.shared.Token(tokenHash(tok), now)
		var p Principal
		if err == nil && ok {
			err = json.Unmarshal(data, &p)
		}
		if err != nil {
			ts.logger.Error("cannot read the fleet's access tokens; the token is refused", "err", err)
			return Principal{}, false
		}
		return p, ok
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t, ok := ts.m[tokenHash(tok)]
	if !ok || now.After(t.expires) {
		return Principal{}, false
	}
	return t.p, true
}

func (ts *tokens) revoke(tok string) error {
	if ts.shared != nil {
		return ts.shared.DeleteToken(tokenHash(tok))
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	delete(ts.m, tokenHash(tok))
	return nil
}

func tokenHash(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

// maxNonces bounds the nonces remembered; past it the oldest go (a
// replay then still needs a timestamp within the window).
const maxNonces = 200000

// nonces remembers the nonces of signed requests for the window.
type nonces struct {
	mu     sync.Mutex
	seen   map[string]time.Time
	shared NonceStore // a fleet's: a nonce seen by any node is refused by all
	logger *slog.Logger
}

// NonceStore is a fleet's record of signed requests' nonces (pgstore).
type NonceStore interface {
	FreshNonce(nonce string) (bool, error) // by the store's clock
}

// fresh records key+nonce and reports whether it was new.
func (n *nonces) fresh(key string, now time.Time) bool {
	if n.shared != nil {
		ok, err := n.shared.FreshNonce(key)
		if err != nil {
			n.logger.Error("cannot check a signed request's nonce with the fleet; refused", "err", err)
			return false
		}
		return ok
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.seen == nil {
		n.seen = map[string]time.Time{}
	}
	if len(n.seen) >= maxNonces/2 {
		for k, t := range n.seen {
			if now.Sub(t) > 2*signedWindow {
				delete(n.seen, k)
			}
		}
		for k := range n.seen { // still full: make room
			if len(n.seen) < maxNonces {
				break
			}
			delete(n.seen, k)
		}
	}
	if _, dup := n.seen[key]; dup {
		return false
	}
	n.seen[key] = now
	return true
}

// Users are the gateway's SMTP users for the password grant.
type Users func() []config.User

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

// oauthToken is POST /oauth/token.
func (a *API) oauthToken(w http.ResponseWriter, r *http.Request) {
	client, now := clientAddr(r), time.Now()
	if blocked, wait := a.failures.blocked(client, now); blocked {
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
		oauthError(w, http.StatusTooManyRequests, "slow_down", "too many failed authentications from this address")
		return
	}
	form, err := tokenForm(w, r)
	if err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	var p Principal
	switch form.Get("grant_type") {
	case "client_credentials":
		id, secret := form.Get("client_id"), form.Get("client_secret")
		if u, pw, ok := r.BasicAuth(); ok {
			id, secret = u, pw
		}
		var ok bool
		if p, ok = a.keyPrincipal(id, secret); !ok {
			a.failures.failed(client, now)
			a.logger.Warn("oauth: client credentials refused", "client_id", id, "remote", r.RemoteAddr)
			oauthError(w, http.StatusUnauthorized, "invalid_client", "unknown client or wrong secret")
			return
		}
	case "password":
		user, pw := form.Get("username"), form.Get("password")
		scope, ok := a.userOK(user, pw)
		if !ok {
			a.failures.failed(client, now)
			a.logger.Warn("oauth: password grant refused", "username", user, "remote", r.RemoteAddr)
			oauthError(w, http.StatusBadRequest, "invalid_grant", "wrong username or password")
			return
		}
		p = Principal{Name: "user " + user, Scope: scope, User: user}
		if scope == ScopeSend {
			// The user's own address, in the form the intake compares
			// with; a user name that is no address sends as nobody.
			addr, _, err := mailtext.CanonicalAddress(user)
			if err != nil || addr == "" {
				addr = user
			}
			p.Addresses = []string{addr}
		}
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be client_credentials or password")
		return
	}
	tok, exp, err := a.tokens.issue(p, now)
	if err != nil {
		a.logger.Error("oauth: cannot store the token", "err", err)
		oauthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the token could not be stored; try again")
		return
	}
	if a.audit != nil {
		a.audited(withPrincipal(r, p), "oauth-token", "", "token issued ("+form.Get("grant_type")+"), valid until "+exp.UTC().Format(time.RFC3339))
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": int(exp.Sub(now).Seconds()), "scope": p.Scope})
}

// oauthRevoke is POST /oauth/revoke (RFC 7009): the token itself proves
// the right to end it; an unknown token is not an error.
func (a *API) oauthRevoke(w http.ResponseWriter, r *http.Request) {
	form, err := tokenForm(w, r)
	if err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	tok := form.Get("token")
	p, known := a.tokens.lookup(tok, time.Now()) // whose it was, for the record
	if err := a.tokens.revoke(tok); err != nil {
		a.logger.Error("oauth: cannot revoke the token", "err", err)
		oauthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the token could not be revoked; try again")
		return
	}
	if known {
		a.audited(withPrincipal(r, p), "oauth-revoke", "", "token revoked")
	}
	w.WriteHeader(http.StatusOK)
}

// tokenForm reads the form (or JSON) of a token request.
func tokenForm(w http.ResponseWriter, r *http.Request) (url.Values, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 16<<10))
	if err != nil {
		return nil, err
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "application/json" {
		var m map[string]string
		if err := json.Unmarshal(body, &m); err != nil {
			return nil, err
		}
		v := url.Values{}
		for k, s := range m {
			v.Set(k, s)
		}
		return v, nil
	}
	return url.ParseQuery(string(body))
}

// keyPrincipal checks an API key's ID and secret.
func (a *API) keyPrincipal(id, secret string) (Principal, bool) {
	if a.apiKeys == nil || id == "" {
		return Principal{}, false
	}
	k, err := a.apiKeys.APIKeyByID(id)
	sum := sha256.Sum256([]byte(secret))
	if err != nil || !hmac.Equal(sum[:], k.Hash) || !k.Revoked.IsZero() {
		return Principal{}, false
	}
	return keyHolder(k), true
}

// keyHolder is the principal of a request made with key k.
func keyHolder(k *queue.APIKey) Principal {
	return Principal{Name: "API key " + k.ID + " (" + k.Name + ")", Scope: k.Scope, KeyID: k.ID, Domains: k.Domains,
		PerMinute: k.RatePerMinute, MaxBytes: k.MaxMessageBytes}
}

// userOK checks a user of inbound.auth.users and says the scope of the
// user's token (api_scope; send by default).
func (a *API) userOK(user, pw string) (string, bool) {
	if a.users == nil || user == "" {
		return "", false
	}
	users := a.users()
	for _, u := range users {
		if u.Username == user {
			return cmp.Or(u.APIScope, ScopeSend), config.CheckPassword(u.PasswordHash, pw)
		}
	}
	if len(users) > 0 {
		config.CheckPassword(users[0].PasswordHash, "\x00 not a password \x00") // an unknown user costs a check too
	}
	return "", false
}

// userStill says whether a password-grant token's user is still in
// inbound.auth.users with the same api_scope (a reload may have removed
// or changed them).
func (a *API) userStill(p Principal) bool {
	if a.users == nil {
		return false
	}
	for _, u := range a.users() {
		if u.Username == p.User {
			return cmp.Or(u.APIScope, ScopeSend) == p.Scope
		}
	}
	return false
}

// signedPrincipal checks a Sealgate-Signature request; it reads and
// restores the body.
func (a *API) signedPrincipal(r *http.Request, header string, now time.Time) (Principal, bool) {
	fields := map[string]string{}
	for _, part := range strings.Split(header, ",") {
		if k, v, ok := strings.Cut(strings.TrimSpace(part), "="); ok {
			fields[k] = v
		}
	}
	id, ts, nonce, sig := fields["key"], fields["t"], fields["nonce"], fields["v1"]
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || id == "" || nonce == "" || len(nonce) > 128 || sig == "" || a.apiKeys == nil {
		return Principal{}, false
	}
	if d := now.Sub(time.Unix(unix, 0)); d > signedWindow || d < -signedWindow {
		a.logger.Warn("admin API: signed request outside the ±5 minute window", "key", id, "remote", r.RemoteAddr)
		return Principal{}, false
	}
	k, err := a.apiKeys.APIKeyByID(id)
	if err != nil || !k.Revoked.IsZero() {
		return Principal{}, false
	}
	// The body must be read to check the signature; a key ID is no
	// secret, so only a few such reads run at once, and the rest wait
	// their turn instead of holding the memory together.
	select {
	case a.signedReads <- struct{}{}:
		defer func() { <-a.signedReads }()
	case <-r.Context().Done():
		return Principal{}, false
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, a.maxBody()+1))
	if err != nil {
		return Principal{}, false
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	bodySum := sha256.Sum256(body)
	mac := hmac.New(sha256.New, k.Hash)
	mac.Write([]byte(r.Method + "\n" + r.URL.RequestURI() + "\n" + ts + "\n" + nonce + "\n" + hex.EncodeToString(bodySum[:])))
	want := hex.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(sig), []byte(want)) {
		return Principal{}, false
	}
	if !a.nonces.fresh(id+"\x00"+nonce, now) {
		a.logger.Warn("admin API: replayed signed request refused", "key", id, "remote", r.RemoteAddr)
		return Principal{}, false
	}
	// The same name as the key's other ways in: what it sent stays its
	// own whichever way it asks (the log and audit say "signed").
	p := keyHolder(k)
	p.Signed = true
	return p, true
}

func (a *API) maxBody() int64 {
	if a.sendLimits.MaxBytes > 0 {
		return a.sendLimits.MaxBytes
	}
	return 64 << 20
}
