package admin

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// request sends one request with the given headers and returns the
// status.
func request(t *testing.T, url, method, host string, header map[string]string) int {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestAdminRoutesNeedTokenHostAndJSON(t *testing.T) {
	s := openStore(t)
	id := enqueue(t, s, "alice@org.test", "bob@dest.test")
	srv := serve(t, Options{Store: s, Wake: func(string) {}, Ready: func() bool { return true }}, true)
	bearer := map[string]string{"Authorization": "Bearer " + testToken}
	json := map[string]string{"Authorization": "Bearer " + testToken, "Content-Type": "application/json"}
	for _, tc := range []struct {
		name, method, path, host string
		header                   map[string]string
		want                     int
	}{
		{"no token", "GET", "/api/v1/queue", "", nil, 401},
		{"wrong token", "GET", "/api/v1/queue", "", map[string]string{"Authorization": "Bearer " + strings.Repeat("0", 64)}, 401},
		{"token as basic", "GET", "/api/v1/queue", "", map[string]string{"Authorization": "Basic " + testToken}, 401},
		{"pprof without token", "GET", "/debug/pprof/", "", nil, 401},
		{"rebound host", "GET", "/api/v1/queue", "evil.example:8025", bearer, 421},
		{"form post", "POST", "/api/v1/queue/" + id + "/hold", "", map[string]string{"Authorization": "Bearer " + testToken, "Content-Type": "application/x-www-form-urlencoded"}, 415},
		{"post without type", "DELETE", "/api/v1/queue/" + id, "", bearer, 415},
		{"health is open", "GET", "/healthz", "", nil, 200},
		{"readiness is open", "GET", "/readyz", "", nil, 200},
		{"list with token", "GET", "/api/v1/queue", "", bearer, 200},
		{"localhost names the listener", "GET", "/api/v1/queue", "localhost:" + srv.URL[strings.LastIndexByte(srv.URL, ':')+1:], bearer, 200},
		{"hold with token and JSON", "POST", "/api/v1/queue/" + id + "/hold", "", json, 200},
	} {
		if got := request(t, srv.URL+tc.path, tc.method, tc.host, tc.header); got != tc.want {
			t.Errorf("%s: %s %s = %d, want %d", tc.name, tc.method, tc.path, got, tc.want)
		}
	}
	if m, _ := s.Get(id); !m.Held {
		t.Error("the authorised hold did not happen")
	}
	if _, err := NewAdminClient(srv.Listener.Addr().String(), strings.Repeat("1", 64)).List(); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("client with a wrong token: %v, want ErrUnauthorized", err)
	}
}

func TestTokenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.token")
	tok, err := LoadOrCreateToken(path)
	if err != nil || len(tok) != 64 {
		t.Fatalf("LoadOrCreateToken = %q, %v", tok, err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %04o, want 0600", st.Mode().Perm())
	}
	if again, err := LoadOrCreateToken(path); err != nil || again != tok {
		t.Errorf("second start read %q, %v; want the same token", again, err)
	}
	os.Chmod(path, 0o644)
	if _, err := ReadToken(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a world-readable token was accepted: %v", err)
	}
}
