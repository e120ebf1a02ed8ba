package portal

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"net/http"
	"sync"
	"time"
)

// sessionCookie names the session: __Host- so that it is only ever set
// by this host, over HTTPS, for the whole site.
const sessionCookie = "__Host-sg-session"

// maxSessions bounds the rate limiter's windows kept in memory.
const maxSessions = 100_000

// sessions are the portal's sessions, kept by the browser: the cookie
// holds the link it opens (the SHA-256 of its token), when it ends, and
// an HMAC-SHA256 of both under the session key. So any node that has the
// key accepts it — the nodes of a fleet derive it from the escrow key
// they share — and no node keeps a table of them. A session cannot be
// made to open another link or to last longer without the key; one
// ends at its lifetime, and an expired, revoked or destroyed message
// stays closed whatever the cookie says (each page checks the store).
type sessions struct {
	now func() time.Time
	key []byte // HMAC key, 32 bytes
}

// sessionValue is the cookie's content before its MAC: token hash, then
// the end as Unix seconds.
const sessionValue = sha256.Size + 8

func newSessions(now func() time.Time, key []byte) *sessions {
	if len(key) == 0 {
		key = make([]byte, 32) // this process only: a restart ends the sessions
		rand.Read(key)
	}
	return &sessions{now: now, key: key}
}

func (s *sessions) mac(v []byte) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte("sealgate portal session v1\x00"))
	m.Write(v)
	return m.Sum(nil)
}

func (s *sessions) start(w http.ResponseWriter, token string, lifetime time.Duration) {
	th := sha256.Sum256([]byte(token))
	v := make([]byte, 0, sessionValue+sha256.Size)
	v = append(v, th[:]...)
	v = binary.BigEndian.AppendUint64(v, uint64(s.now().Add(lifetime).Unix()))
	v = append(v, s.mac(v)...)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: base64.RawURLEncoding.EncodeToString(v), Path: "/",
		MaxAge: int(lifetime.Seconds()), Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

// valid reports whether r carries a live session for token.
func (s *sessions) valid(r *http.Request, token string) bool {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return false
	}
	v, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil || len(v) != sessionValue+sha256.Size {
		return false
	}
	if !hmac.Equal(v[sessionValue:], s.mac(v[:sessionValue])) {
		return false
	}
	end := time.Unix(int64(binary.BigEndian.Uint64(v[sha256.Size:sessionValue])), 0)
	if !s.now().Before(end) {
		return false
	}
	want := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(v[:sha256.Size], want[:]) == 1
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
