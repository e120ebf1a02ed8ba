package gateway_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sealgate/sealgate/gateway/audit"
	"github.com/sealgate/sealgate/pgstore"

	"github.com/sealgate/sealgate/gateway/admin"
	"github.com/sealgate/sealgate/internal/testutil"
	"github.com/sealgate/sealgate/queue"
)

// fleet starts two gateway nodes sharing one PostgreSQL store, with the
// same DNS and destinations.
func fleet(t *testing.T) (a, b *e2e) {
	t.Helper()
	dsn := testutil.PostgreSQL(t)
	extra := fmt.Sprintf("store:\n  postgres:\n    dsn: %q\n    key_file: %s\n", dsn, filepath.Join(t.TempDir(), "fleet.key"))
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
	info, key, err := a.admin().CreateAPIKey(admin.NewAPIKey{Name: "dashboards", Scope: admin.ScopeRead})
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

// TestFleetCountsAKeysSendRate: a key's messages per minute are counted
// across the fleet. Node A takes the whole limit; node B, which learns
// the other nodes' counts every second, then refuses — well before it
// has taken a limit of its own (it would, counting alone).
func TestFleetCountsAKeysSendRate(t *testing.T) {
	const limit = 20
	a, b := fleet(t)
	_, key, err := a.admin().CreateAPIKey(admin.NewAPIKey{Name: "reminders", Scope: admin.ScopeSend, Domains: []string{"org.test"}, RatePerMinute: limit})
	if err != nil {
		t.Fatal(err)
	}
	send := func(e *e2e) (int, string) {
		t.Helper()
		code, _, h := e.postAPI("/api/v1/messages", "message/rfc822", "From: noreply@org.test\r\nTo: bob@dest.test\r\nSubject: reminder\r\n\r\nx\r\n", key)
		return code, h.Get("Retry-After")
	}
	for i := range limit {
		if code, _ := send(a); code != http.StatusCreated {
			t.Fatalf("send %d of %d through node A: %d", i+1, limit, code)
		}
	}
	for took := 0; ; took++ {
		code, retry := send(b)
		if code == http.StatusTooManyRequests {
			if retry == "" {
				t.Error("429 without Retry-After")
			}
			break
		}
		if code != http.StatusCreated || took+1 >= limit {
			t.Fatalf("node B took %d more (last answer %d): it counts alone", took+1, code)
		}
		time.Sleep(300 * time.Millisecond) // B learns A's count within a second or two
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
    key_file: `+filepath.Join(t.TempDir(), "fleet.key")+`
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

// TestFleetSharesEscrow is the patient's path across a fleet: a message
// escrowed by node A opens through node B's portal (the load balancer
// sent the browser there), the one-time code asked for on B is spent
// once for the whole fleet, the session started on one node holds on
// the other, and a revocation through node B closes the link on node A
// at once. The database holds only ciphertext.
func TestFleetSharesEscrow(t *testing.T) {
	dsn := testutil.PostgreSQL(t)
	dns, ca := testutil.NewDNSServer(t), testutil.NewCA(t)
	keyFile := filepath.Join(t.TempDir(), "escrow.key") // the fleet's escrow key, on every node
	portA, portB := testutil.FreePort(t), testutil.FreePort(t)
	node := func(port, destPort int) *e2e {
		extra := fmt.Sprintf(`store:
  postgres:
    dsn: %q
    key_file: `+filepath.Join(filepath.Dir(keyFile), "fleet.key")+`
escrow:
  organization: Clinic X
  key_file: %s
portal:
  listen: 127.0.0.1:%d
  public_url: https://127.0.0.1:%d
`, dsn, keyFile, port, portA)
		if destPort == 0 {
			return newE2EWith(t, dns, ca, extra)
		}
		return newE2EPort(t, dns, ca, destPort, extra)
	}
	a := node(portA, 0)
	b := node(portB, a.port)
	dest := a.destination("dest.test", "127.0.0.2", testutil.SinkOptions{TLS: true, CA: ca})
	x := &escrowE2E{e2e: a, portal: fmt.Sprintf("https://127.0.0.1:%d", portA), dest: dest}

	id := a.send("alice@org.test", []string{"bob@dest.test"}, message("[secure] Lab results", "Your haemoglobin is 13.2."))
	a.waitState(id, "bob@dest.test", queue.StateDelivered)
	linkA, _ := x.noticeLink(t, "bob@dest.test")
	linkB := strings.Replace(linkA, fmt.Sprintf(":%d/", portA), fmt.Sprintf(":%d/", portB), 1)

	// The browser reaches node B: it asks for a code there.
	c := browser(t)
	resp, page := get(t, c, linkB)
	if resp.StatusCode != 200 || !strings.Contains(page, "Email me a code") {
		t.Fatalf("node B's portal on node A's message: %d\n%s", resp.StatusCode, page)
	}
	resp, page = post(t, c, linkB+"/code", url.Values{"csrf": {csrfOf(t, page)}})
	if resp.StatusCode != 200 || !strings.Contains(page, "We have emailed a code") {
		t.Fatalf("code request on node B: %d\n%s", resp.StatusCode, page)
	}
	code := x.codeFor(t, "bob@dest.test", 1)

	// The next request lands on node A: the code works there.
	_, page = get(t, c, linkA)
	resp, page = post(t, c, linkA+"/verify", url.Values{"csrf": {csrfOf(t, page)}, "code": {code}})
	if resp.StatusCode != 200 || !strings.Contains(page, "haemoglobin") {
		t.Fatalf("the code from node B on node A: %d\n%s", resp.StatusCode, page)
	}
	// The session started on A holds on B.
	if resp, page = get(t, c, linkB); resp.StatusCode != 200 || !strings.Contains(page, "haemoglobin") {
		t.Fatalf("node A's session on node B: %d\n%s", resp.StatusCode, page)
	}
	// The code is spent fleet-wide: another browser cannot use it on B.
	other := browser(t)
	_, page = get(t, other, linkB)
	_, page = post(t, other, linkB+"/verify", url.Values{"csrf": {csrfOf(t, page)}, "code": {code}})
	if strings.Contains(page, "haemoglobin") {
		t.Fatal("a spent code opened the message again on another node")
	}

	// Nothing readable in the database.
	s, err := pgstore.Open(context.Background(), pgstore.Options{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	found := false
	s.KVView(func(tx queue.KVTx) error {
		for _, bucket := range []string{"escrow-messages", "escrow-recipients", "escrow-content", "escrow-tokens"} {
			tx.Bucket([]byte(bucket)).ForEach(func(k, v []byte) error {
				found = true
				for _, secret := range []string{"haemoglobin", "bob@dest.test", "Lab results", strings.TrimPrefix(linkA, x.portal+"/m/")} {
					if bytes.Contains(k, []byte(secret)) || bytes.Contains(v, []byte(secret)) {
						t.Errorf("the shared store's %s holds %q in clear", bucket, secret)
					}
				}
				return nil
			})
		}
		return nil
	})
	if !found {
		t.Fatal("the escrowed message is not in the shared store")
	}

	// Revoked through node B's admin API: node A's link is closed.
	recs, err := b.admin().Escrow().ForQueueID(id)
	if err != nil || len(recs) != 1 {
		t.Fatalf("node B's escrow records for node A's message: %+v, %v", recs, err)
	}
	if _, err := b.admin().Escrow().Revoke(recs[0].MessageID, ""); err != nil {
		t.Fatal(err)
	}
	if _, page = get(t, c, linkA); strings.Contains(page, "haemoglobin") || strings.Contains(page, "Email me a code") {
		t.Errorf("node A still shows a message revoked through node B:\n%s", page)
	}
}

// TestFleetAuditTrail: the auditor's fleet view. Two nodes each relay a
// message; both chains reach the shared store with their checkpoints
// and a fleet checkpoint; one search answers for either message, naming
// the node; every chain verifies against its node's key. Then someone
// with the database edits a record of node A and cuts node B's chain
// short, checkpoints and head included: verification names both.
func TestFleetAuditTrail(t *testing.T) {
	dsn := testutil.PostgreSQL(t)
	extra := fmt.Sprintf("store:\n  postgres:\n    dsn: %q\n    key_file: %s\naudit:\n  checkpoint_interval: 100ms\n", dsn, filepath.Join(t.TempDir(), "fleet.key"))
	dns, ca := testutil.NewDNSServer(t), testutil.NewCA(t)
	a := newE2EWith(t, dns, ca, extra)
	b := newE2EPort(t, dns, ca, a.port, extra)
	a.destination("dest.test", "127.0.0.2", testutil.SinkOptions{TLS: true})
	idA := a.send("alice@org.test", []string{"bob@dest.test"}, message("via A", "first"))
	idB := b.send("carol@org.test", []string{"dan@dest.test"}, message("via B", "second"))
	a.waitState(idA, "bob@dest.test", queue.StateDelivered)
	b.waitState(idB, "dan@dest.test", queue.StateDelivered)

	s, err := pgstore.Open(context.Background(), pgstore.Options{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	nodeID := func(e *e2e) string {
		key, err := audit.LoadOrCreateKey(e.gw.Config().AuditSigningKeyFile())
		if err != nil {
			t.Fatal(err)
		}
		return audit.NodeID(key.Public().(ed25519.PublicKey))
	}
	nodeA, nodeB := nodeID(a), nodeID(b)
	// The newest fleet checkpoint's statement of node B's head.
	signedB := func() uint64 {
		cps, err := s.FleetCheckpoints()
		if err != nil || len(cps) == 0 {
			return 0
		}
		var st audit.FleetStatement
		json.Unmarshal(cps[len(cps)-1].Statement, &st)
		return st.Heads[nodeB].Seq
	}
	var rep audit.FleetReport
	deadline := time.Now().Add(20 * time.Second)
	for {
		found, err := audit.SearchFleet(s, audit.Filter{Recipient: "dan@dest.test"}, 0)
		if err != nil {
			t.Fatal(err)
		}
		finished := false
		for _, f := range found {
			finished = finished || f.Type == "finished" && f.QueueID == idB
		}
		rep, err = audit.VerifyFleet(s)
		if err != nil {
			t.Fatal(err)
		}
		if finished && len(rep.Nodes) == 2 && signedB() >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the fleet's trail after 20 s: %d records for dan, %+v", len(found), rep)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !rep.OK() {
		t.Fatalf("the fleet's trail does not verify: %+v", rep)
	}
	found, _ := audit.SearchFleet(s, audit.Filter{QueueID: idA}, 0)
	if len(found) == 0 || found[0].Type != "received" || found[0].Node != "gw.test" {
		t.Fatalf("search for node A's message: %+v", found)
	}

	// Shut both nodes so nothing more is shipped, then tamper.
	for _, e := range []*e2e{a, b} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		e.gw.Shutdown(ctx)
		cancel()
	}
	rep, _ = audit.VerifyFleet(s)
	if !rep.OK() {
		t.Fatalf("the fleet's trail after shutdown: %+v", rep)
	}
	db, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := db.Exec(context.Background(), sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	var headB uint64
	db.QueryRow(context.Background(), "SELECT head_seq FROM audit_nodes WHERE node = $1", nodeB).Scan(&headB)
	exec(`UPDATE audit_entries SET record = convert_to(replace(convert_from(record, 'UTF8'), 'bob@dest.test', 'eve@dest.test'), 'UTF8')
		WHERE node = $1 AND seq = (SELECT min(seq) FROM audit_entries WHERE node = $1 AND convert_from(record, 'UTF8') LIKE '%bob@dest.test%')`, nodeA)
	exec("DELETE FROM audit_entries WHERE node = $1 AND seq > 1", nodeB)
	exec("DELETE FROM audit_checkpoints WHERE node = $1", nodeB)
	exec("UPDATE audit_nodes SET head_seq = 1, head_hash = (SELECT hash FROM audit_entries WHERE node = $1 AND seq = 1), last_checkpoint = 0 WHERE node = $1", nodeB)
	rep, err = audit.VerifyFleet(s)
	if err != nil {
		t.Fatal(err)
	}
	var problemsA []string
	for _, n := range rep.Nodes {
		if n.Node == nodeA {
			problemsA = n.Problems
		}
	}
	if !strings.Contains(strings.Join(problemsA, "\n"), "was edited") {
		t.Errorf("node A's edited record is not named: %q", problemsA)
	}
	if !strings.Contains(strings.Join(rep.Problems, "\n"), "missing (deleted)") || headB <= 1 {
		t.Errorf("node B's chain cut to its first entry (head was %d) is not found by the fleet checkpoints: %q", headB, rep.Problems)
	}

	// Each node's own record of what it shipped and signed, from its
	// spool (the database cannot rewrite it).
	anchor := func(e *e2e) audit.Anchor {
		key, err := audit.LoadOrCreateKey(e.gw.Config().AuditSigningKeyFile())
		if err != nil {
			t.Fatal(err)
		}
		st, err := queue.Open(queue.Options{Path: e.gw.Config().SpoolDBFile(), KeyFile: e.gw.Config().SpoolKeyFile()})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		an, err := audit.New(st, key, nil).Anchor()
		if err != nil || an.ShippedSeq == 0 {
			t.Fatalf("anchor of %s: %+v, %v", e.dir, an, err)
		}
		return an
	}
	anchorA, anchorB := anchor(a), anchor(b)
	rep, _ = audit.VerifyFleet(s, anchorA, anchorB)
	if !strings.Contains(strings.Join(rep.Problems, "\n"), "which it shipped, is missing from the fleet's trail") {
		t.Errorf("node B's anchor does not find its cut chain: %q", rep.Problems)
	}

	// Whoever holds the database removes node B and every fleet
	// checkpoint: the database alone cannot tell, the nodes' anchors do.
	exec("DELETE FROM audit_nodes WHERE node = $1", nodeB)
	exec("DELETE FROM audit_fleet_checkpoints")
	rep, _ = audit.VerifyFleet(s, anchorA, anchorB)
	problems := strings.Join(rep.Problems, "\n")
	if !strings.Contains(problems, "the fleet's trail has no chain of it (deleted)") {
		t.Errorf("node B removed from the database is not found: %q", rep.Problems)
	}
	signedBy := anchorA
	if signedBy.SignedID == 0 {
		signedBy = anchorB
	}
	if signedBy.SignedID == 0 || !strings.Contains(problems, fmt.Sprintf("fleet checkpoint %d, which", signedBy.SignedID)) {
		t.Errorf("deleted fleet checkpoints are not found by the leader's anchor (%+v): %q", signedBy, rep.Problems)
	}
}

// TestFleetNodeLosesTheDatabase: a node whose shared store goes away
// keeps taking mail into its own spool and relaying what needs no shared
// state (through its smarthost), and says so in /readyz; mail that would
// need the TLS history is not sent without it.
func TestFleetNodeLosesTheDatabase(t *testing.T) {
	pg := testutil.PostgreSQLServer(t)
	dns, ca := testutil.NewDNSServer(t), testutil.NewCA(t)
	relay := testutil.NewSMTPSink(t, testutil.SinkOptions{ListenAddr: "127.0.0.9:0", Hostname: "relay.test"})
	e := newE2EWith(t, dns, ca, fmt.Sprintf("store:\n  postgres:\n    dsn: %q\noutbound:\n  smarthost: {address: %q, tls: none}\n", pg.DSN, relay.Addr()))
	pg.Stop()

	id := e.send("alice@org.test", []string{"bob@dest.test"}, message("while the database is away", "still relayed"))
	e.waitState(id, "bob@dest.test", queue.StateDelivered)
	if n := len(relay.Messages()); n != 1 {
		t.Fatalf("the smarthost got %d messages, want 1", n)
	}
	resp, err := http.Get("http://" + e.gw.AdminAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ready struct {
		Status      string `json:"status"`
		SharedStore string `json:"shared_store"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ready); err != nil || resp.StatusCode != 200 || ready.SharedStore != "down" {
		t.Errorf("/readyz while the database is away: %d %+v %v; want ready, shared store down", resp.StatusCode, ready, err)
	}
}
