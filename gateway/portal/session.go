package portal

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"sync"
	"time"
)

// sessionCookie names the session: __Host- so that it is only ever set
// by this host, over HTTPS, for the whole site.
const sessionCookie = "__Host-sg-session"

// maxSessions bounds the sessions kept in memory; past it the oldest
// expiry goes first.
const maxSessions = 100_000

// sessions are the portal's open sessions, in memory: each is bound to
// one link (the token's hash) and ends after its lifetime. A restart
// ends them all, which costs a recipient one more code.
type sessions struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]session // by SHA-256 of the cookie value
}

type session struct {
	tokenHash [32]byte
	expires   time.Time
}

func newSessions(now func() time.Time) *sessions {
	return &sessions{now: now, m: map[string]session{}}
}

func (s *sessions) start(w http.ResponseWriter, token string, lifetime time.Duration) {
	var b [32]byte
	rand.Read(b[:])
	val := base64.RawURLEncoding.EncodeToString(b[:])
	now := s.now()
	s.mu.Lock()
	for k, v := range s.m {
		if !now.Before(v.expires) || len(s.m) >= maxSessions {
			delete(s.m, k)
		}
	}
	s.m[key(val)] = session{tokenHash: sha256.Sum256([]byte(token)), expires: now.Add(lifetime)}
	s.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: val, Path: "/", MaxAge: int(lifetime.Seconds()),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

func key(cookie string) string {
	h := sha256.Sum256([]byte(cookie))
	return string(h[:])
}

// valid reports whether r carries a live session for token.
func (s *sessions) valid(r *http.Request, token string) bool {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.m[key(c.Value)]
	if !ok {
		return false
	}
	if !s.now().Before(sess.expires) {
		delete(s.m, key(c.Value))
		return false
	}
	want := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(sess.tokenHash[:], want[:]) == 1
}

// limiter counts requests per key (client address and action) in
// fixed windows.
type limiter struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]*window
}

type window struct {
	start time.Time
	n     int
}

func newLimiter(now func() time.Time) *limiter { return &limiter{now: now, m: map[string]*window{}} }

// allow counts one request for k and reports whether it is within max
// per per.
func (l *limiter) allow(k string, max int, per time.Duration) bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.m) > maxSessions {
		for k, w := range l.m {
			if now.Sub(w.start) >= per {
				delete(l.m, k)
			}
		}
	}
	w := l.m[k]
	if w == nil || now.Sub(w.start) >= per {
		w = &window{start: now}
		l.m[k] = w
	}
	w.n++
	return w.n <= max
}
