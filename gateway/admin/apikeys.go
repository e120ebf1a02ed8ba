package admin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sealgate/sealgate/internal/mailtext"
	"github.com/sealgate/sealgate/queue"
)

// Credentials of the REST API.
//
// Besides the data dir's admin token (the CLI's), the API takes API keys
// created with "sealgate api key create": an ID and a secret, given as
// "X-API-Key: id:secret", "Authorization: Bearer id:secret" or HTTP Basic
// with the same pair. Only a SHA-256 of the secret is stored (the secret
// is 32 random bytes, so a slow hash buys nothing). A key has one scope:
//   - read: every GET (queue, audit, domains, keys, escrow, stats, metrics);
//   - send: the send API only;
//   - admin: everything.
// Wrong or missing credentials get 401, the wrong scope 403; a client
// that fails too often is refused for a while (429) and every refusal is
// logged.

// Scopes.
const (
	ScopeRead  = "read"
	ScopeSend  = "send"
	ScopeAdmin = "admin"
)

// Principal is who made a request: the name the audit trail records,
// the scope the routes check, and for a send key the sender domains it
// may use and its own send limits.
type Principal struct {
	Name    string
	Scope   string
	KeyID   string   // "" for the admin token
	Domains []string // nil: any
	// PerMinute and MaxBytes are the key's own send limits (0: the
	// node's SendLimits.PerMinute and inbound.max_message_bytes).
	PerMinute int
	MaxBytes  int64
	// Addresses, when set, are the only senders it may use (a user's
	// token from the password grant).
	Addresses []string
	Signed    bool   // a signed request
	User      string // the user of a password-grant token
}

type principalKey struct{}

// principalOf is the request's principal (set by guard).
func principalOf(r *http.Request) Principal {
	p, _ := r.Context().Value(principalKey{}).(Principal)
	return p
}

// APIKeyStore keeps the keys (queue.Store).
type APIKeyStore interface {
	PutAPIKey(k queue.APIKey) error
	APIKeyByID(id string) (*queue.APIKey, error)
	APIKeys() ([]queue.APIKey, error)
	RevokeAPIKey(id string, now time.Time) error
}

// APIKeyInfo is what a listing shows of a key (never its hash).
type APIKeyInfo struct {
	ID      string   `json:"id"`
	Name    string   `json:"name"`
	Scope   string   `json:"scope"`
	Domains []string `json:"domains,omitempty"`
	// The key's own send limits; absent: the node's.
	RatePerMinute   int       `json:"rate_per_minute,omitempty"`
	MaxMessageBytes int64     `json:"max_message_bytes,omitempty"`
	Created         time.Time `json:"created"`
	Revoked         time.Time `json:"revoked,omitzero"`
}

// NewAPIKey is what a key is made with: what uses it, its scope, the
// sender domains a send key may use, and its own send limits — messages
// a minute and bytes a message — where the node's
// (api.messages_per_minute, inbound.max_message_bytes) should not apply.
// A key's bytes a message can lower the node's limit, not raise it: the
// node bounds what it holds.
type NewAPIKey struct {
	Name            string   `json:"name"`
	Scope           string   `json:"scope"`
	Domains         []string `json:"domains,omitempty"`
	RatePerMinute   int      `json:"rate_per_minute,omitempty"`
	MaxMessageBytes int64    `json:"max_message_bytes,omitempty"`
}

// APIKeyOps are the key commands: on the spool file, or the running
// server's API.
type APIKeyOps interface {
	CreateAPIKey(k NewAPIKey) (APIKeyInfo, string, error)
	ListAPIKeys() ([]APIKeyInfo, error)
	RevokeAPIKey(id string) error
}

// ErrBadScope: a scope other than read, send, admin.
var ErrBadScope = errors.New("scope must be read, send or admin")

// CreateAPIKey makes a key in store and returns it with its credential
// "id:secret", which is shown once.
func CreateAPIKey(store APIKeyStore, nk NewAPIKey, now time.Time) (APIKeyInfo, string, error) {
	name, scope, domains := nk.Name, nk.Scope, slices.Clone(nk.Domains)
	if scope != ScopeRead && scope != ScopeSend && scope != ScopeAdmin {
		return APIKeyInfo{}, "", fmt.Errorf("%w, got %q", ErrBadScope, scope)
	}
	if scope == ScopeSend && len(domains) == 0 {
		return APIKeyInfo{}, "", errors.New("a send key needs the sender domains it may use (--domains example.org)")
	}
	if nk.RatePerMinute < 0 || nk.MaxMessageBytes < 0 {
		return APIKeyInfo{}, "", errors.New("a key's rate per minute and bytes per message must not be negative (0: the node's limits)")
	}
	if scope == ScopeRead && (nk.RatePerMinute > 0 || nk.MaxMessageBytes > 0) {
		return APIKeyInfo{}, "", errors.New("a read key sends nothing: send limits are for send and admin keys")
	}
	for i, d := range domains {
		c, err := mailtext.CanonicalDomain(strings.TrimSpace(d))
		if err != nil || c == "" || strings.HasPrefix(c, "[") {
			return APIKeyInfo{}, "", fmt.Errorf("%q is not a domain", d)
		}
		domains[i] = c
	}
	if strings.TrimSpace(name) == "" || len(name) > 200 {
		return APIKeyInfo{}, "", errors.New("a key needs a name (what uses it), at most 200 characters")
	}
	idb, secret := make([]byte, 8), make([]byte, 32)
	rand.Read(idb)
	rand.Read(secret)
	id := "sk" + hex.EncodeToString(idb)
	sec := base64.RawURLEncoding.EncodeToString(secret)
	sum := sha256.Sum256([]byte(sec))
	k := queue.APIKey{ID: id, Name: name, Scope: scope, Hash: sum[:], Domains: domains,
		RatePerMinute: nk.RatePerMinute, MaxMessageBytes: nk.MaxMessageBytes, Created: now.UTC()}
	if err := store.PutAPIKey(k); err != nil {
		return APIKeyInfo{}, "", err
	}
	return infoOf(k), id + ":" + sec, nil
}

// Describe names the key for the audit trail and the CLI: ID, name,
// scope and its own limits.
func (k APIKeyInfo) Describe() string {
	d := fmt.Sprintf("API key %s (%s, scope %s", k.ID, k.Name, k.Scope)
	if k.RatePerMinute > 0 {
		d += fmt.Sprintf(", %d messages a minute", k.RatePerMinute)
	}
	if k.MaxMessageBytes > 0 {
		d += fmt.Sprintf(", %d bytes a message", k.MaxMessageBytes)
	}
	return d + ")"
}

func infoOf(k queue.APIKey) APIKeyInfo {
	return APIKeyInfo{ID: k.ID, Name: k.Name, Scope: k.Scope, Domains: k.Domains,
		RatePerMinute: k.RatePerMinute, MaxMessageBytes: k.MaxMessageBytes, Created: k.Created, Revoked: k.Revoked}
}

// LocalAPIKeys are the key commands on a stopped server's spool file.
type LocalAPIKeys struct{ Store APIKeyStore }

func (l LocalAPIKeys) CreateAPIKey(k NewAPIKey) (APIKeyInfo, string, error) {
	return CreateAPIKey(l.Store, k, time.Now())
}

func (l LocalAPIKeys) ListAPIKeys() ([]APIKeyInfo, error) {
	keys, err := l.Store.APIKeys()
	var out []APIKeyInfo
	for _, k := range keys {
		out = append(out, infoOf(k))
	}
	return out, err
}

func (l LocalAPIKeys) RevokeAPIKey(id string) error { return l.Store.RevokeAPIKey(id, time.Now()) }

// APIKeyOpsFor gives the key commands beside the spool access q.
func APIKeyOpsFor(q QueueOps) (APIKeyOps, error) {
	switch q := q.(type) {
	case *AdminClient:
		return q, nil
	case *queue.Store:
		return LocalAPIKeys{q}, nil
	}
	return nil, fmt.Errorf("unexpected spool access %T", q)
}

// The client side.

func (c *AdminClient) CreateAPIKey(k NewAPIKey) (APIKeyInfo, string, error) {
	var res struct {
		APIKeyInfo
		Key string `json:"key"`
	}
	err := c.send(http.MethodPost, "/api/v1/apikeys", k, &res)
	var refused *refusedError
	if errors.As(err, &refused) {
		return APIKeyInfo{}, "", errors.New(refused.msg)
	}
	return res.APIKeyInfo, res.Key, err
}

func (c *AdminClient) ListAPIKeys() ([]APIKeyInfo, error) {
	var out []APIKeyInfo
	err := c.do(http.MethodGet, "/api/v1/apikeys", &out)
	return out, err
}

func (c *AdminClient) RevokeAPIKey(id string) error {
	return c.do(http.MethodPost, "/api/v1/apikeys/"+url.PathEscape(id)+"/revoke", nil)
}

// The server side.

func (a *API) apiKeyRoutes(mux *routeMux) {
	if a.apiKeys == nil {
		return
	}
	mux.HandleFunc("GET /api/v1/apikeys", func(w http.ResponseWriter, r *http.Request) {
		keys, err := LocalAPIKeys{a.apiKeys}.ListAPIKeys()
		if err != nil {
			a.fail(w, err)
			return
		}
		if keys == nil {
			keys = []APIKeyInfo{}
		}
		if keys, ok := paginate(w, r, keys, func(k APIKeyInfo) string { return k.ID }); ok {
			writeJSON(w, http.StatusOK, keys)
		}
	})
	mux.HandleFunc("POST /api/v1/apikeys", func(w http.ResponseWriter, r *http.Request) {
		var in NewAPIKey
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10)).Decode(&in); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "want {\"name\": …, \"scope\": …}"})
			return
		}
		info, key, err := CreateAPIKey(a.apiKeys, in, time.Now())
		if err != nil {
			writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"error": err.Error()})
			return
		}
		a.audited(r, "apikey-create", "", info.Describe())
		writeJSON(w, http.StatusOK, struct {
			APIKeyInfo
			Key string `json:"key"`
		}{info, key})
	})
	mux.HandleFunc("POST /api/v1/apikeys/{id}/revoke", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if err := a.apiKeys.RevokeAPIKey(id, time.Now()); errors.Is(err, queue.ErrNotFound) {
			apiError(w, http.StatusNotFound, "no such API key "+id)
			return
		} else if err != nil {
			a.fail(w, err)
			return
		}
		a.audited(r, "apikey-revoke", "", "API key "+id+" revoked")
		writeJSON(w, http.StatusOK, map[string]string{"revoked": id})
	})
}

// authenticate finds the request's principal: the admin token or an API
// key, from whichever header carries it; ok false when there is none or
// it is wrong.
func (a *API) authenticate(r *http.Request) (Principal, bool) {
	now := time.Now()
	if sig := r.Header.Get("Sealgate-Signature"); sig != "" {
		return a.signedPrincipal(r, sig, now)
	}
	cred := r.Header.Get("X-API-Key")
	if h := r.Header.Get("Authorization"); cred == "" && h != "" {
		if tok, isBearer := strings.CutPrefix(h, "Bearer "); isBearer {
			tok = strings.TrimSpace(tok)
			if a.token != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(a.token)) == 1 {
				return Principal{Name: "admin token", Scope: ScopeAdmin}, true
			}
			if strings.HasPrefix(tok, "at_") {
				p, ok := a.tokens.lookup(tok, now)
				if ok && p.KeyID != "" { // a revoked key ends its tokens
					if k, err := a.apiKeys.APIKeyByID(p.KeyID); err != nil || !k.Revoked.IsZero() {
						return Principal{}, false
					}
				}
				if ok && p.User != "" && !a.userStill(p) { // so does a user removed or given another scope
					return Principal{}, false
				}
				return p, ok
			}
			cred = tok
		} else if id, secret, isBasic := r.BasicAuth(); isBasic {
			cred = id + ":" + secret
		}
	}
	id, secret, ok := strings.Cut(cred, ":")
	if !ok {
		return Principal{}, false
	}
	return a.keyPrincipal(id, secret)
}

// scopeNeeded is the scope a request needs.
func scopeNeeded(r *http.Request) string {
	switch {
	case strings.HasPrefix(r.URL.Path, "/api/v1/messages"):
		return ScopeSend
	case strings.HasPrefix(r.URL.Path, "/debug/"):
		return ScopeAdmin
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		return ScopeRead
	}
	return ScopeAdmin
}

// allows says whether scope may make r, which needs need: admin may
// do anything, a key its own scope, and a read key may also read a
// message's status.
func allows(scope, need string, r *http.Request) bool {
	return scope == ScopeAdmin || scope == need || (need == ScopeSend && scope == ScopeRead && r.Method == http.MethodGet)
}

// failureLimiter refuses a client that failed to authenticate too often:
// at most failLimit failures per failWindow per address.
type failureLimiter struct {
	mu      sync.Mutex
	clients map[string][]time.Time
}

const (
	failLimit  = 10
	failWindow = 10 * time.Minute
)

// clientAddr is what failures are counted by: the client's address, or
// its /64 for IPv6 (one host has a whole /64 to rotate through).
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is6() && !ip.Is4In6() {
		if p, err := ip.Prefix(64); err == nil {
			return p.String()
		}
	}
	return host
}

// maxTrackedClients bounds the failure limiter's memory: past it, the
// clients with the oldest failures are forgotten.
const maxTrackedClients = 10000

// blocked reports whether the client is refused now, and for how long.
func (l *failureLimiter) blocked(client string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fs := l.recent(client, now)
	if len(fs) < failLimit {
		return false, 0
	}
	return true, fs[0].Add(failWindow).Sub(now)
}

func (l *failureLimiter) failed(client string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.clients == nil {
		l.clients = map[string][]time.Time{}
	}
	fs := append(l.recent(client, now), now)
	if len(fs) > failLimit {
		fs = fs[len(fs)-failLimit:] // only the last failLimit matter
	}
	l.clients[client] = fs
	if len(l.clients) > maxTrackedClients {
		// Forget the quiet ones; if all are busy, the half whose last
		// failure is oldest. Amortised: this runs once per many failures.
		for c := range l.clients {
			if len(l.recent(c, now)) == 0 {
				delete(l.clients, c)
			}
		}
		if len(l.clients) > maxTrackedClients*3/4 {
			cutoff := now.Add(-failWindow / 2)
			for c, fs := range l.clients {
				if fs[len(fs)-1].Before(cutoff) {
					delete(l.clients, c)
				}
			}
		}
	}
}

func (l *failureLimiter) recent(client string, now time.Time) []time.Time {
	fs := l.clients[client]
	i := 0
	for i < len(fs) && now.Sub(fs[i]) > failWindow {
		i++
	}
	return fs[i:]
}

// withPrincipal is r carrying p.
func withPrincipal(r *http.Request, p Principal) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), principalKey{}, p))
}
