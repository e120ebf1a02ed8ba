package admin

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/queue"
)

// openEscrow opens the escrow store of s with a key in a temporary
// directory.
func openEscrow(t *testing.T, s *queue.Store) *queue.Escrow {
	t.Helper()
	e, err := s.OpenEscrow(queue.EscrowOptions{KeyFile: filepath.Join(t.TempDir(), "escrow.key")})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func deposit(t *testing.T, e *queue.Escrow, queueID, rcpt string) string {
	t.Helper()
	id, _, err := e.Deposit(queue.EscrowDeposit{QueueID: queueID, EnvelopeFrom: "alice@org.test", Sender: "Alice <alice@org.test>",
		Recipient: rcpt}, []byte("Subject: Lab\r\n\r\nhaemoglobin 13.2\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestEscrowRoutesNeedTheToken(t *testing.T) {
	s := openStore(t)
	e := openEscrow(t, s)
	rcptID := deposit(t, e, "q1", "bob@dest.test")
	msgID, _, _ := strings.Cut(rcptID, ".")
	srv := serve(t, Options{Store: s, Escrow: e}, false)
	bearer := map[string]string{"Authorization": "Bearer " + testToken}
	json := map[string]string{"Authorization": "Bearer " + testToken, "Content-Type": "application/json"}
	for _, tc := range []struct {
		name, method, path string
		header             map[string]string
		want               int
	}{
		{"list without token", "GET", "/api/v1/escrow", nil, 401},
		{"show without token", "GET", "/api/v1/escrow/" + msgID, nil, 401},
		{"revoke without token", "POST", "/api/v1/escrow/" + msgID + "/revoke", map[string]string{"Content-Type": "application/json"}, 401},
		{"revoke as a form post", "POST", "/api/v1/escrow/" + msgID + "/revoke", map[string]string{"Authorization": "Bearer " + testToken, "Content-Type": "application/x-www-form-urlencoded"}, 415},
		{"list", "GET", "/api/v1/escrow", bearer, 200},
		{"by queue ID", "GET", "/api/v1/escrow?queue_id=q1", bearer, 200},
		{"show", "GET", "/api/v1/escrow/" + rcptID, bearer, 200},
		{"show unknown", "GET", "/api/v1/escrow/nosuch", bearer, 404},
		{"revoke unknown", "POST", "/api/v1/escrow/nosuch/revoke", json, 404},
	} {
		if got := request(t, srv.URL+tc.path, tc.method, "", tc.header); got != tc.want {
			t.Errorf("%s: %s %s = %d, want %d", tc.name, tc.method, tc.path, got, tc.want)
		}
	}
	if recs, _ := EscrowOf(e).Show(msgID); len(recs) != 1 || recs[0].State != "active" {
		t.Errorf("refused requests changed the record: %+v", recs)
	}
	// What the API shows of a record: never the content, the wrapped
	// key, the link hashes or the code.
	code, body := do(t, srv, "GET", "/api/v1/escrow/"+msgID)
	if code != 200 || !strings.Contains(body, `"kind": "link issued"`) {
		t.Fatalf("show: %d\n%s", code, body)
	}
	for _, secret := range []string{"haemoglobin", "wrapped", "token", "salt", "hash"} {
		if strings.Contains(strings.ToLower(body), secret) {
			t.Errorf("show answers with %q:\n%s", secret, body)
		}
	}
}

func TestEscrowThroughClient(t *testing.T) {
	s := openStore(t)
	e := openEscrow(t, s)
	bob := deposit(t, e, "q1", "bob@dest.test")
	carol := deposit(t, e, "q1", "carol@dest.test")
	other := deposit(t, e, "q2", "dave@dest.test")
	msgID, _, _ := strings.Cut(bob, ".")
	srv := serve(t, Options{Store: s, Escrow: e}, false)
	c := NewAdminClient(srv.Listener.Addr().String(), testToken).Escrow()

	recs, err := c.List()
	if err != nil || len(recs) != 3 {
		t.Fatalf("List = %+v, %v", recs, err)
	}
	for _, r := range recs {
		if r.State != "active" || r.Opened || r.Sender != "Alice <alice@org.test>" || r.Expires.IsZero() || r.Events != nil {
			t.Errorf("listed %+v", r)
		}
	}
	if recs, err := c.ForQueueID("q1"); err != nil || len(recs) != 2 || recs[0].ID != bob || recs[1].ID != carol || len(recs[0].Events) == 0 {
		t.Errorf("ForQueueID(q1) = %+v, %v", recs, err)
	}
	if recs, err := c.ForQueueID("q3"); err != nil || len(recs) != 0 {
		t.Errorf("ForQueueID of a message never escrowed = %+v, %v", recs, err)
	}

	// One recipient, named by address (in another case).
	recs, err = c.Revoke(msgID, "Bob@DEST.test")
	if err != nil || len(recs) != 1 || recs[0].ID != bob || recs[0].State != "revoked" {
		t.Fatalf("Revoke(bob) = %+v, %v", recs, err)
	}
	last := recs[0].Events[len(recs[0].Events)-1]
	if last.Kind != queue.EscrowRevoked || !strings.Contains(last.Detail, "by admin") {
		t.Errorf("access log ends with %+v, want revoked by admin", last)
	}
	if recs, _ := c.Show(carol); len(recs) != 1 || recs[0].State != "active" {
		t.Errorf("carol after bob's revocation: %+v", recs)
	}
	if _, err := c.Revoke(msgID, "erin@dest.test"); !errors.Is(err, ErrNoEscrowRecipient) {
		t.Errorf("Revoke of a recipient the message does not have: %v", err)
	}
	if _, err := c.Revoke("nosuch", ""); !errors.Is(err, queue.ErrEscrowGone) {
		t.Errorf("Revoke of an unknown ID: %v", err)
	}
	if _, err := c.Show("nosuch"); !errors.Is(err, queue.ErrEscrowGone) {
		t.Errorf("Show of an unknown ID: %v", err)
	}

	// The whole message.
	if recs, err = c.Revoke(msgID, ""); err != nil || len(recs) != 2 {
		t.Fatalf("Revoke(message) = %+v, %v", recs, err)
	}
	for _, r := range recs {
		if r.State != "revoked" || r.RevokedBy != "admin" || r.Destroyed.IsZero() {
			t.Errorf("after revoking the message: %+v", r)
		}
	}
	if recs, _ := c.Show(other); recs[0].State != "active" {
		t.Errorf("another message was revoked too: %+v", recs)
	}
}

func TestEscrowOffOnTheServer(t *testing.T) {
	s := openStore(t)
	srv := serve(t, Options{Store: s}, false)
	c := NewAdminClient(srv.Listener.Addr().String(), testToken).Escrow()
	if _, err := c.List(); !errors.Is(err, ErrEscrowOff) {
		t.Errorf("List on a server without escrow: %v, want ErrEscrowOff", err)
	}
	if _, err := c.Revoke("x", ""); !errors.Is(err, ErrEscrowOff) {
		t.Errorf("Revoke on a server without escrow: %v, want ErrEscrowOff", err)
	}
}

// On a stopped data dir that never held escrowed mail, the escrow
// operations find nothing and create no key.
func TestOpenEscrowOpsCreatesNoKey(t *testing.T) {
	cfg := testConfig(t, "")
	spoolOf(t, cfg).Close()
	ops, _, closeOps, err := OpenEscrowOps(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer closeOps()
	if recs, err := ops.List(); err != nil || len(recs) != 0 {
		t.Errorf("List = %+v, %v", recs, err)
	}
	if _, err := ops.Show("x"); !errors.Is(err, queue.ErrEscrowGone) {
		t.Errorf("Show: %v", err)
	}
	if _, err := os.Stat(cfg.EscrowKeyFile()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("escrow key after looking: %v", err)
	}
}
