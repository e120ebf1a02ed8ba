package portal

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestSessionsAcrossNodes: a session cookie started by one node opens
// the same link on another node with the same key, and nothing else: not
// another link, not under another key, not once it has ended, not with
// a byte changed.
func TestSessionsAcrossNodes(t *testing.T) {
	now := time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	key := bytes.Repeat([]byte{7}, 32)
	a, b := newSessions(clock, key), newSessions(clock, key)
	other := newSessions(clock, bytes.Repeat([]byte{8}, 32))

	rec := httptest.NewRecorder()
	a.start(rec, "token-1", 15*time.Minute)
	cookie := rec.Result().Cookies()[0]
	with := func(c *http.Cookie) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/m/token-1", nil)
		r.AddCookie(c)
		return r
	}
	if !b.valid(with(cookie), "token-1") {
		t.Fatal("node B refuses node A's session")
	}
	if b.valid(with(cookie), "token-2") {
		t.Error("a session opens another link")
	}
	if other.valid(with(cookie), "token-1") {
		t.Error("a session is taken under another key")
	}
	raw, _ := base64.RawURLEncoding.DecodeString(cookie.Value)
	for i := range raw {
		bad := bytes.Clone(raw)
		bad[i] ^= 1
		if b.valid(with(&http.Cookie{Name: sessionCookie, Value: base64.RawURLEncoding.EncodeToString(bad)}), "token-1") {
			t.Fatalf("a session with byte %d changed is taken", i)
		}
	}
	now = now.Add(15 * time.Minute)
	if b.valid(with(cookie), "token-1") {
		t.Error("a session is taken after its lifetime")
	}
}
