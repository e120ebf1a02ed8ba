package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testutil"
	"github.com/sealgate/sealgate/queue"
)

// dataDirConfig returns a data dir and a config file that names it.
func dataDirConfig(t *testing.T) (data, cfg string) {
	dir := t.TempDir()
	data, cfg = filepath.Join(dir, "data"), filepath.Join(dir, "sealgate.yaml")
	writeFile(t, cfg, "data_dir: "+data+"\n")
	return data, cfg
}

// escrowSeed is what seedEscrow left in a stopped server's data dir.
type escrowSeed struct {
	queueID, messageID string
	bob, carol         string // access record IDs
	bobToken           string
	carolToken         string
}

// seedEscrow spools one message and escrows it for bob and carol, as an
// earlier run would have: notices sent, bob opened it from 192.0.2.7.
func seedEscrow(t *testing.T, dataDir string) escrowSeed {
	t.Helper()
	store, err := queue.Open(queue.Options{Path: filepath.Join(dataDir, "spool.db"), KeyFile: filepath.Join(dataDir, "spool.key")})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	body := []byte("From: Alice <alice@org.test>\r\nSubject: Lab\r\n\r\nhaemoglobin 13.2\r\n")
	qid, err := store.Enqueue(context.Background(), queue.Envelope{From: "alice@org.test",
		Recipients: []string{"bob@dest.test", "carol@dest.test"}, ClientAddr: "127.0.0.1:40000"}, body)
	if err != nil {
		t.Fatal(err)
	}
	e, err := store.OpenEscrow(queue.EscrowOptions{KeyFile: filepath.Join(dataDir, "escrow.key")})
	if err != nil {
		t.Fatal(err)
	}
	s := escrowSeed{queueID: qid}
	for _, r := range []struct {
		addr      string
		id, token *string
	}{{"bob@dest.test", &s.bob, &s.bobToken}, {"carol@dest.test", &s.carol, &s.carolToken}} {
		if *r.id, *r.token, err = e.Deposit(queue.EscrowDeposit{QueueID: qid, EnvelopeFrom: "alice@org.test",
			Sender: "Alice <alice@org.test>", Recipient: r.addr}, body); err != nil {
			t.Fatal(err)
		}
		if err := e.RecordFor(*r.id, queue.EscrowNoticeSent, "", "notice accepted by mx.dest.test"); err != nil {
			t.Fatal(err)
		}
	}
	s.messageID, _, _ = strings.Cut(s.bob, ".")
	code, _, err := e.IssueCode(s.bobToken, "192.0.2.7")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.CheckCode(s.bobToken, code, "192.0.2.7"); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestEscrowCommandsOnStoppedServer(t *testing.T) {
	data, cfg := dataDirConfig(t)
	seed := seedEscrow(t, data)

	code, stdout, stderr := sealgate(t, "escrow", "list", "--config", cfg)
	if code != 0 || !strings.Contains(stdout, "ID  ") || !strings.Contains(stdout, "2 escrowed recipients") {
		t.Fatalf("escrow list: exit %d\n%s%s", code, stdout, stderr)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(stdout, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			rows[f[0]] = strings.Join(f, " ")
		}
	}
	if row := rows[seed.bob]; !strings.HasPrefix(row, seed.bob+" Alice <alice@org.test> bob@dest.test ") || !strings.HasSuffix(row, " yes active") {
		t.Errorf("escrow list row of bob %q:\n%s", row, stdout)
	}
	if row := rows[seed.carol]; !strings.Contains(row, " carol@dest.test ") || !strings.HasSuffix(row, " no active") {
		t.Errorf("escrow list row of carol %q:\n%s", row, stdout)
	}

	code, stdout, _ = sealgate(t, "escrow", "list", "--json", "--config", cfg)
	var recs []struct {
		ID, Sender, Recipient, State string
		Opened                       bool
	}
	if err := json.Unmarshal([]byte(stdout), &recs); code != 0 || err != nil || len(recs) != 2 {
		t.Fatalf("escrow list --json: exit %d, %v\n%s", code, err, stdout)
	}
	if recs[0].ID != seed.bob || !recs[0].Opened || recs[1].Opened || recs[1].Recipient != "carol@dest.test" || recs[1].State != "active" {
		t.Errorf("escrow list --json: %+v", recs)
	}

	code, stdout, _ = sealgate(t, "escrow", "show", seed.messageID, "--config", cfg)
	if code != 0 {
		t.Fatalf("escrow show: exit %d", code)
	}
	for _, want := range []string{"Recipient:  bob@dest.test", "Recipient:  carol@dest.test", "Access log:", "link issued", "notice sent",
		"code sent", "192.0.2.7", "opened", "Opened:     yes, first at", "queue ID " + seed.queueID} {
		if !strings.Contains(stdout, want) {
			t.Errorf("escrow show lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "haemoglobin") {
		t.Error("escrow show prints the content")
	}
	if code, _, stderr := sealgate(t, "escrow", "show", "nosuch", "--config", cfg); code != 1 || !strings.Contains(stderr, "no escrowed message nosuch") {
		t.Errorf("escrow show of an unknown ID: exit %d: %s", code, stderr)
	}

	// Usage errors come before anything is opened.
	for _, args := range [][]string{{"revoke"}, {"revoke", seed.messageID, "--recipient", "not an address"}, {"show"}, {"list", "extra"}} {
		if code, _, stderr := sealgate(t, append(append([]string{"escrow"}, args...), "--config", cfg)...); code != 2 {
			t.Errorf("escrow %v: exit %d, want 2: %s", args, code, stderr)
		}
	}
	if code, _, stderr := sealgate(t, "escrow", "revoke", seed.messageID, "--recipient", "erin@dest.test", "--config", cfg); code != 1 ||
		!strings.Contains(stderr, "erin@dest.test") {
		t.Errorf("escrow revoke of a recipient the message lacks: exit %d: %s", code, stderr)
	}
	if code, _, stderr := sealgate(t, "escrow", "revoke", "nosuch", "--config", cfg); code != 1 || !strings.Contains(stderr, "no escrowed message nosuch") {
		t.Errorf("escrow revoke of an unknown ID: exit %d: %s", code, stderr)
	}

	// One recipient, then the whole message.
	code, stdout, stderr = sealgate(t, "escrow", "revoke", seed.messageID, "--recipient", "bob@dest.test", "--config", cfg)
	if code != 0 || stdout != seed.bob+" bob@dest.test: revoked\n" {
		t.Fatalf("escrow revoke --recipient: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, _ = sealgate(t, "escrow", "show", seed.carol, "--config", cfg)
	if code != 0 || !strings.Contains(stdout, "State:      active") || strings.Contains(stdout, "bob@dest.test") {
		t.Errorf("carol after bob's revocation: exit %d\n%s", code, stdout)
	}
	code, stdout, stderr = sealgate(t, "escrow", "revoke", seed.messageID, "--config", cfg)
	if code != 0 || !strings.Contains(stdout, seed.carol+" carol@dest.test: revoked") || !strings.Contains(stdout, "content of "+seed.messageID+" destroyed") {
		t.Fatalf("escrow revoke: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, _ = sealgate(t, "escrow", "show", seed.carol, "--config", cfg)
	if code != 0 || !strings.Contains(stdout, "message revoked by admin") || !strings.Contains(stdout, "Revoked:") || !strings.Contains(stdout, "by admin") {
		t.Errorf("escrow show after revoke: exit %d\n%s", code, stdout)
	}

	// The links are dead.
	store, err := queue.Open(queue.Options{Path: filepath.Join(data, "spool.db"), KeyFile: filepath.Join(data, "spool.key")})
	if err != nil {
		t.Fatal(err)
	}
	e, err := store.OpenEscrow(queue.EscrowOptions{KeyFile: filepath.Join(data, "escrow.key")})
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{seed.bobToken, seed.carolToken} {
		if _, err := e.Lookup(tok); !errors.Is(err, queue.ErrEscrowGone) {
			t.Errorf("link after revoke: %v", err)
		}
	}
	store.Close()

	// Without its key the escrow store does not open, and says why.
	if err := os.Remove(filepath.Join(data, "escrow.key")); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := sealgate(t, "escrow", "list", "--config", cfg); code != 1 || !strings.Contains(stderr, "escrow key missing") {
		t.Errorf("escrow list without the key: exit %d: %s", code, stderr)
	}
}

// An escrow command on a data dir that never held escrowed mail lists
// nothing and creates no escrow key.
func TestEscrowCommandsWithoutEscrow(t *testing.T) {
	data, cfg := dataDirConfig(t)
	seedSpool(t, data)
	if code, stdout, stderr := sealgate(t, "escrow", "list", "--json", "--config", cfg); code != 0 || strings.TrimSpace(stdout) != "[]" {
		t.Errorf("escrow list: exit %d\n%s%s", code, stdout, stderr)
	}
	if _, err := os.Stat(filepath.Join(data, "escrow.key")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("escrow key after escrow list: %v", err)
	}
}

func TestQueueShowHasEscrowEvents(t *testing.T) {
	data, cfg := dataDirConfig(t)
	seed := seedEscrow(t, data)

	code, stdout, stderr := sealgate(t, "queue", "show", seed.queueID, "--config", cfg)
	if code != 0 {
		t.Fatalf("queue show: exit %d: %s", code, stderr)
	}
	_, escrow, ok := strings.Cut(stdout, "\nEscrow:\n")
	if !ok {
		t.Fatalf("queue show has no escrow section:\n%s", stdout)
	}
	for _, want := range []string{"bob@dest.test: access " + seed.bob + ", active, opened yes", "carol@dest.test: access " + seed.carol + ", active, opened no",
		"link issued", "notice sent", "notice accepted by mx.dest.test", "code sent    192.0.2.7", "opened       192.0.2.7"} {
		if !strings.Contains(escrow, want) {
			t.Errorf("queue show's escrow section lacks %q:\n%s", want, escrow)
		}
	}

	code, stdout, _ = sealgate(t, "queue", "show", seed.queueID, "--json", "--config", cfg)
	var shown struct {
		ID         string
		Recipients []struct{ Address string }
		Escrow     []struct {
			ID, Recipient string
			Events        []struct{ Kind, Client string }
		}
	}
	if err := json.Unmarshal([]byte(stdout), &shown); code != 0 || err != nil {
		t.Fatalf("queue show --json: exit %d, %v\n%s", code, err, stdout)
	}
	if shown.ID != seed.queueID || len(shown.Recipients) != 2 || len(shown.Escrow) != 2 || shown.Escrow[0].ID != seed.bob {
		t.Fatalf("queue show --json: %+v", shown)
	}
	var kinds []string
	for _, ev := range shown.Escrow[0].Events {
		kinds = append(kinds, ev.Kind+"@"+ev.Client)
	}
	if got := strings.Join(kinds, ","); got != "link issued@,notice sent@,code sent@192.0.2.7,opened@192.0.2.7" {
		t.Errorf("bob's escrow events in queue show --json: %s", got)
	}

	// A message that was not escrowed has no escrow section.
	seedSpool(t, data)
	code, stdout, _ = sealgate(t, "queue", "list", "--json", "--config", cfg)
	var msgs []struct{ ID string }
	if err := json.Unmarshal([]byte(stdout), &msgs); code != 0 || err != nil || len(msgs) != 2 {
		t.Fatalf("queue list: %v\n%s", err, stdout)
	}
	code, stdout, _ = sealgate(t, "queue", "show", msgs[1].ID, "--config", cfg)
	if code != 0 || strings.Contains(stdout, "Escrow:") {
		t.Errorf("queue show of a message never escrowed: exit %d\n%s", code, stdout)
	}
}

// Against a running server the escrow commands and queue show's access
// logs go through the admin API.
func TestEscrowCommandsThroughRunningServer(t *testing.T) {
	bin := buildBinary(t)
	data, cfg := dataDirConfig(t)
	seed := seedEscrow(t, data)
	smtpAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	portal := testutil.FreePort(t)
	writeFile(t, cfg, fmt.Sprintf("data_dir: %s\ninbound: {listen: %s}\nadmin: {listen: 127.0.0.1:%d}\n"+
		"portal: {listen: 127.0.0.1:%d, public_url: https://127.0.0.1:%d}\n", data, smtpAddr, testutil.FreePort(t), portal, portal))
	startServer(t, bin, cfg, smtpAddr)

	code, stdout, stderr := sealgate(t, "escrow", "list", "--config", cfg)
	if code != 0 || !strings.Contains(stdout, seed.bob) || !strings.Contains(stdout, "2 escrowed recipients") {
		t.Fatalf("escrow list through the server: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr = sealgate(t, "queue", "show", seed.queueID, "--config", cfg)
	if code != 0 || !strings.Contains(stdout, "bob@dest.test: access "+seed.bob+", active, opened yes") || !strings.Contains(stdout, "192.0.2.7") {
		t.Errorf("queue show through the server: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr = sealgate(t, "escrow", "revoke", seed.messageID, "--recipient", "bob@dest.test", "--config", cfg)
	if code != 0 || stdout != seed.bob+" bob@dest.test: revoked\n" {
		t.Errorf("escrow revoke through the server: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, _, stderr := sealgate(t, "escrow", "revoke", seed.messageID, "--recipient", "erin@dest.test", "--config", cfg); code != 1 || !strings.Contains(stderr, "erin@dest.test") {
		t.Errorf("escrow revoke of a recipient the message lacks, through the server: exit %d: %s", code, stderr)
	}
	if code, _, stderr := sealgate(t, "escrow", "show", "nosuch", "--config", cfg); code != 1 || !strings.Contains(stderr, "no escrowed message nosuch") {
		t.Errorf("escrow show of an unknown ID through the server: exit %d: %s", code, stderr)
	}
	code, stdout, _ = sealgate(t, "escrow", "show", seed.bob, "--json", "--config", cfg)
	var recs []struct {
		State  string
		Events []struct{ Kind, Detail string }
	}
	if err := json.Unmarshal([]byte(stdout), &recs); code != 0 || err != nil || len(recs) != 1 {
		t.Fatalf("escrow show --json through the server: exit %d, %v\n%s", code, err, stdout)
	}
	if last := recs[0].Events[len(recs[0].Events)-1]; recs[0].State != "revoked" || last.Kind != queue.EscrowRevoked || last.Detail != "access revoked by admin" {
		t.Errorf("bob after revocation through the server: %+v", recs[0])
	}
}
