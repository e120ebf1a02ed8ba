package gateway_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/gateway/admin"
	"github.com/sealgate/sealgate/internal/testutil"
	"github.com/sealgate/sealgate/queue"
)

// fleet starts two gateway nodes sharing one PostgreSQL store, with the
// same DNS and destinations.
func fleet(t *testing.T) (a, b *e2e) {
	t.Helper()
	dsn := testutil.PostgreSQL(t)
	extra := fmt.Sprintf("store:\n  postgres:\n    dsn: %q\n", dsn)
	dns, ca := testutil.NewDNSServer(t), testutil.NewCA(t)
	a = newE2EWith(t, dns, ca, extra)
	b = newE2EPort(t, dns, ca, a.port, extra)
	return a, b
}

// TestFleetSharesTLSHistory: a partner domain that took mail over
// verified TLS from node A is never sent plaintext by node B, which has
// never delivered to it: when a host without STARTTLS appears in front
// (a stripped EHLO, an attacker in the path), B's first message still
// goes to the genuine host over verified TLS, required by the history A
// learned.
func TestFleetSharesTLSHistory(t *testing.T) {
	a, b := fleet(t)
	genuine := a.destination("dest.test", "127.0.0.2", testutil.SinkOptions{TLS: true})
	id := a.send("alice@org.test", []string{"bob@dest.test"}, message("first", "over TLS, by node A"))
	a.waitState(id, "bob@dest.test", queue.StateDelivered)

	b.dns.AddMX("dest.test", "evil.dest.test", 1)
	b.dns.AddA("evil.dest.test", "127.0.0.6")
	evil := testutil.NewSMTPSink(t, testutil.SinkOptions{ListenAddr: fmt.Sprintf("127.0.0.6:%d", b.port), Hostname: "evil.dest.test"})

	id = b.send("alice@org.test", []string{"bob@dest.test"}, message("second", "still secret, by node B"))
	m := b.waitState(id, "bob@dest.test", queue.StateDelivered)
	if n := len(evil.Messages()); n != 0 {
		t.Fatalf("the host without STARTTLS got %d messages from node B", n)
	}
	if n := len(genuine.Messages()); n != 2 {
		t.Errorf("the genuine host got %d messages, want 2", n)
	}
	att := lastAttempt(m)
	if att == nil || att.TLSLevel != "verify" || !strings.Contains(att.TLSRequiredBy, "domain history (verified TLS seen since") {
		t.Errorf("node B's attempt record %+v", att)
	}
	// And node B's admin API shows the history node A learned.
	if d, err := b.admin().Domains(); err != nil || len(d) != 1 || !d[0].Verified {
		t.Errorf("node B's domains: %+v, %v", d, err)
	}
	resp, err := http.Get("http://" + b.gw.AdminAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ready struct {
		Status      string `json:"status"`
		SharedStore string `json:"shared_store"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ready); err != nil || ready.Status != "ready" || ready.SharedStore != "up" {
		t.Errorf("node B's /readyz: %+v, %v; want ready with the shared store up", ready, err)
	}
}

// TestFleetSharesAPIKeys: a key created through node A's admin API (as
// the CLI does) works on node B; revoked through B, A refuses it.
func TestFleetSharesAPIKeys(t *testing.T) {
	a, b := fleet(t)
	info, key, err := a.admin().CreateAPIKey("dashboards", admin.ScopeRead, nil)
	if err != nil {
		t.Fatal(err)
	}
	get := func(e *e2e) int { return getWith(t, e, "X-API-Key", key) }
	if got := get(b); got != http.StatusOK {
		t.Fatalf("node B answers %d to a key created on node A, want 200", got)
	}

	// An OAuth token issued by node A is good on node B; revoked
	// through node B, node A refuses it.
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {info.ID}, "client_secret": {strings.SplitN(key, ":", 2)[1]}}
	resp, err := http.PostForm("http://"+a.gw.AdminAddr()+"/oauth/token", form)
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || tok.AccessToken == "" {
		t.Fatalf("token from node A: %d %+v", resp.StatusCode, tok)
	}
	if got := getWith(t, b, "Authorization", "Bearer "+tok.AccessToken); got != http.StatusOK {
		t.Fatalf("node B answers %d to a token node A issued, want 200", got)
	}
	resp, err = http.PostForm("http://"+b.gw.AdminAddr()+"/oauth/revoke", url.Values{"token": {tok.AccessToken}})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke through node B: %v %v", resp, err)
	}
	resp.Body.Close()
	if got := getWith(t, a, "Authorization", "Bearer "+tok.AccessToken); got != http.StatusUnauthorized {
		t.Fatalf("node A answers %d to a token revoked on node B, want 401", got)
	}

	if err := b.admin().RevokeAPIKey(info.ID); err != nil {
		t.Fatal(err)
	}
	if got := get(a); got != http.StatusUnauthorized {
		t.Fatalf("node A answers %d to a key revoked on node B, want 401", got)
	}
}

// getWith is GET /api/v1/queue on the node with one header set.
func getWith(t *testing.T, e *e2e, header, value string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+e.gw.AdminAddr()+"/api/v1/queue", nil)
	req.Header.Set(header, value)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// admin is a client of the node's admin API with its token, as the CLI.
func (e *e2e) admin() *admin.AdminClient {
	e.t.Helper()
	token, err := os.ReadFile(filepath.Join(e.dir, "data", "admin.token"))
	if err != nil {
		e.t.Fatal(err)
	}
	return admin.NewAdminClient(e.gw.AdminAddr(), strings.TrimSpace(string(token)))
}

// TestFleetSharesKeys: a correspondent's key imported through node A's
// admin API encrypts mail that node B relays (GnuPG decrypts it); removed
// through node B, node A no longer finds it.
func TestFleetSharesKeys(t *testing.T) {
	needGPG(t)
	bob := newGnuPG(t, "Bob <bob@dest.test>", "ed25519", false)
	dsn := testutil.PostgreSQL(t)
	extra := fmt.Sprintf(`store:
  postgres:
    dsn: %q
policy:
  rules:
    - name: partners-pgp
      match: {to: [dest.test]}
      chain: [pgp]
`, dsn)
	dns, ca := testutil.NewDNSServer(t), testutil.NewCA(t)
	a := newE2EWith(t, dns, ca, extra)
	b := newE2EPort(t, dns, ca, a.port, extra)
	sink := a.destination("dest.test", "127.0.0.2", testutil.SinkOptions{TLS: true})
	if _, err := a.admin().ImportKeys(bob.export()); err != nil {
		t.Fatal(err)
	}
	id := b.send("alice@org.test", []string{"bob@dest.test"}, message("via B", "Patient letter follows."))
	b.waitState(id, "bob@dest.test", queue.StateDelivered)
	got := sink.WaitMessages(t, 1, 20*time.Second)[0]
	if !bytes.Contains(got.Data, []byte("multipart/encrypted")) || bytes.Contains(got.Data, []byte("Patient letter")) {
		t.Fatalf("node B did not encrypt with the key imported on node A:\n%s", got.Data)
	}
	_, enc, _ := bytes.Cut(got.Data, []byte("-----BEGIN PGP MESSAGE-----"))
	enc, _, _ = bytes.Cut(enc, []byte("-----END PGP MESSAGE-----"))
	plain := bob.run([]byte("-----BEGIN PGP MESSAGE-----"+string(enc)+"-----END PGP MESSAGE-----\n"), "--decrypt")
	if !bytes.Contains(plain, []byte("Patient letter follows.")) {
		t.Errorf("GnuPG decrypts node B's message to:\n%s", plain)
	}
	if n, err := b.admin().RemoveKey(bob.fingerprint()); err != nil || n != 1 {
		t.Fatalf("remove through node B: %d, %v", n, err)
	}
	if keys, err := a.admin().KeysFor("bob@dest.test"); err != nil || len(keys) != 0 {
		t.Errorf("node A still finds %d keys for bob after removal on B (%v)", len(keys), err)
	}
}
