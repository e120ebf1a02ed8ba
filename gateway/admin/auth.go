package admin

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sealgate/sealgate/internal/safeio"
)

// The admin API's lock. The listener is loopback only, but a loopback
// port is reachable by every local user and, through DNS rebinding, by
// any web page a local browser opens. So:
//   - every /api/ and /debug/ route needs "Authorization: Bearer <token>",
//     the token being the contents of the data dir's admin.token (0600,
//     made on first start; the CLI reads it, so only who can read the
//     data dir can run queue commands against a live server);
//   - the Host header must name the listener itself (a rebound name does
//     not);
//   - a request that changes something must say Content-Type:
//     application/json, which an HTML form cannot send across origins.
// /healthz and /readyz stay open: they say nothing about the mail.

// ErrUnauthorized: the server refused the token (401).
var ErrUnauthorized = errors.New("admin API: missing or wrong token (is admin.token from this data dir?)")

// LoadOrCreateToken returns the token in path, creating it (32 random
// bytes, hex, mode 0600) when the file does not exist. A token file that
// others can read is refused: anyone who reads it controls the queue.
func LoadOrCreateToken(path string) (string, error) {
	tok, err := ReadToken(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return tok, err
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	tok = hex.EncodeToString(b)
	if err := safeio.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("admin token %s: %w", path, err)
	}
	return tok, nil
}

// ReadToken reads the token in path.
func ReadToken(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("admin token %s is readable by others (mode %04o): chmod 600 it", path, st.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(data))
	if len(tok) < 32 {
		return "", fmt.Errorf("admin token %s is too short (want at least 32 characters)", path)
	}
	return tok, nil
}

// AllowedHosts are the Host header values that name the listener at
// addr: its own address and localhost with its port.
func AllowedHosts(addr string) []string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return []string{addr}
	}
	hosts := []string{net.JoinHostPort(host, port), net.JoinHostPort("localhost", port)}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		hosts = append(hosts, net.JoinHostPort("127.0.0.1", port), net.JoinHostPort("::1", port))
	}
	return hosts
}

// guard applies the lock in front of the routes.
func (a *API) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
			next.ServeHTTP(w, r)
			return
		}
		if !a.hostAllowed(r.Host) {
			a.logger.Warn("admin API: request for a foreign Host refused", "host", r.Host, "remote", r.RemoteAddr)
			writeJSON(w, http.StatusMisdirectedRequest, map[string]string{"error": "this listener does not serve host " + r.Host})
			return
		}
		if r.URL.Path == "/oauth/token" || r.URL.Path == "/oauth/revoke" {
			next.ServeHTTP(w, r) // the credentials are the request; the handler limits failures
			return
		}
		client, now := clientAddr(r), time.Now()
		// Valid credentials always pass: a page that makes a local
		// browser fail ten times must not lock the CLI out. Only a client
		// that keeps failing is refused without being checked again.
		if blocked, wait := a.failures.blocked(client, now); blocked && !a.credentialsOffered(r) {
			w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
			writeJSON(w, http.StatusTooManyRequests, map[string]string{"error": "too many failed authentications from this address; try again later"})
			return
		}
		p, ok := a.authenticate(r)
		if !ok {
			a.failures.failed(client, now)
			a.logger.Warn("admin API: request without valid credentials refused", "path", r.URL.Path, "remote", r.RemoteAddr)
			if blocked, wait := a.failures.blocked(client, now); blocked {
				w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
				writeJSON(w, http.StatusTooManyRequests, map[string]string{"error": "too many failed authentications from this address; try again later"})
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="sealgate admin"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong credentials (an API key, or the data dir's admin.token)"})
			return
		}
		r = withCall(r, p)
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		defer func() { a.auditCall(r, sw.status) }()
		if need := scopeNeeded(r); !allows(p.Scope, need, r) {
			a.logger.Warn("admin API: request outside the key's scope refused", "path", r.URL.Path, "principal", p.Name, "scope", p.Scope, "needs", need)
			writeJSON(sw, http.StatusForbidden, map[string]string{"error": "this credential's scope (" + p.Scope + ") does not allow it; it needs " + need})
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" && !a.rawAllowed(r, ct) {
				writeJSON(sw, http.StatusUnsupportedMediaType, map[string]string{"error": "requests that change something must be Content-Type: application/json"})
				return
			}
		}
		next.ServeHTTP(sw, r)
	})
}

// credentialsOffered says whether r carries any credential at all (a
// blocked client's request without one is refused unchecked).
func (a *API) credentialsOffered(r *http.Request) bool {
	return r.Header.Get("Authorization") != "" || r.Header.Get("X-API-Key") != "" || r.Header.Get("Sealgate-Signature") != ""
}

// rawAllowed: the send API also takes a raw message (message/rfc822),
// which no HTML form can send either.
func (a *API) rawAllowed(r *http.Request, ct string) bool {
	return ct == "message/rfc822" && strings.HasPrefix(r.URL.Path, "/api/v1/messages")
}

// statusWriter remembers the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// Unwrap gives http.ResponseController the connection's own writer.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Flush passes through (the export streams).
func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (a *API) hostAllowed(host string) bool {
	for _, h := range a.hosts {
		if strings.EqualFold(h, host) {
			return true
		}
	}
	return false
}
