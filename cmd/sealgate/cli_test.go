package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/queue"
)

// sealgate runs one command line in process and returns its exit code,
// stdout and stderr.
func sealgate(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	writeFile(t, good, "inbound:\n  listen: 127.0.0.1:2626\n")
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, "inbound:\n  lisen: 127.0.0.1:2626\n")

	for _, tc := range []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"version"}, 0, "sealgate ", ""},
		{[]string{"config", "check", good}, 0, "good.yaml: ok", ""},
		{[]string{"config", "check", bad}, 2, "", `bad.yaml:2: inbound.lisen: unknown key`},
		{[]string{"config", "check", filepath.Join(dir, "missing.yaml")}, 2, "", "missing.yaml"},
		{[]string{"config", "check"}, 2, "", "accepts 1 arg"},
		{[]string{"no-such-command"}, 2, "", "unknown command"},
		{[]string{"serve", "--no-such-flag"}, 2, "", "unknown flag"},
		{[]string{"queue", "retry"}, 2, "", "either one message ID or --all"},
	} {
		code, stdout, stderr := sealgate(t, tc.args...)
		if code != tc.code || !strings.Contains(stdout, tc.stdout) || !strings.Contains(stderr, tc.stderr) {
			t.Errorf("sealgate %s = %d\nstdout: %s\nstderr: %s\nwant %d, stdout ~ %q, stderr ~ %q",
				strings.Join(tc.args, " "), code, stdout, stderr, tc.code, tc.stdout, tc.stderr)
		}
	}
}

func TestHelpOnEveryCommand(t *testing.T) {
	for _, args := range [][]string{
		{"--help"}, {"serve", "--help"}, {"config", "--help"}, {"config", "check", "--help"},
		{"queue", "--help"}, {"queue", "list", "--help"}, {"queue", "show", "--help"},
		{"queue", "retry", "--help"}, {"queue", "delete", "--help"}, {"queue", "hold", "--help"},
		{"queue", "release", "--help"}, {"queue", "quarantine", "list", "--help"}, {"queue", "quarantine", "restore", "--help"}, {"version", "--help"}, {"config", "hash-password", "--help"},
		{"policy", "explain", "--help"}, {"policy", "check", "--help"},
		{"domains", "list", "--help"}, {"domains", "check", "--help"}, {"domains", "scan", "--help"}, {"domains", "reset", "--help"},
		{"dkim", "keygen", "--help"}, {"dkim", "check", "--help"},
		{"keys", "import", "--help"}, {"keys", "list", "--help"}, {"keys", "show", "--help"}, {"keys", "remove", "--help"},
		{"escrow", "--help"}, {"escrow", "list", "--help"}, {"escrow", "show", "--help"}, {"escrow", "revoke", "--help"},
	} {
		code, stdout, _ := sealgate(t, args...)
		if code != 0 || !strings.Contains(stdout, "Usage:") {
			t.Errorf("sealgate %s: exit %d, output:\n%s", strings.Join(args, " "), code, stdout)
		}
	}
}

func TestQueueCommandsOnStoppedServer(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sealgate.yaml")
	writeFile(t, cfg, "data_dir: "+filepath.Join(dir, "data")+"\n")

	code, _, stderr := sealgate(t, "queue", "list", "--config", cfg)
	if code != 1 || !strings.Contains(stderr, "no spool at") {
		t.Fatalf("queue list without a spool: exit %d, %s", code, stderr)
	}
	seedSpool(t, filepath.Join(dir, "data"))

	code, stdout, stderr := sealgate(t, "queue", "list", "--json", "--config", cfg)
	if code != 0 {
		t.Fatalf("queue list --json: exit %d: %s", code, stderr)
	}
	var msgs []struct{ ID string }
	if err := json.Unmarshal([]byte(stdout), &msgs); err != nil || len(msgs) != 1 {
		t.Fatalf("queue list --json output %q: %v", stdout, err)
	}
	id := msgs[0].ID

	code, stdout, _ = sealgate(t, "queue", "show", id, "--config", cfg)
	if code != 0 || !strings.Contains(stdout, "seeded@org.test") || !strings.Contains(stdout, "received") {
		t.Errorf("queue show: exit %d\n%s", code, stdout)
	}
	if strings.Contains(stdout, "seeded body") {
		t.Error("queue show prints the body")
	}
	for _, step := range [][]string{{"hold", id}, {"release", id}, {"retry", id}, {"retry", "--all"}} {
		if code, _, stderr := sealgate(t, append(append([]string{"queue"}, step...), "--config", cfg)...); code != 0 {
			t.Errorf("queue %v: exit %d: %s", step, code, stderr)
		}
	}
	code, stdout, _ = sealgate(t, "queue", "list", "--config", cfg)
	if code != 0 || !strings.Contains(stdout, id) || !strings.Contains(stdout, "1 messages") {
		t.Errorf("queue list:\n%s", stdout)
	}
	if code, _, _ := sealgate(t, "queue", "delete", id, "--config", cfg); code != 0 {
		t.Errorf("queue delete: exit %d", code)
	}
	if code, _, stderr := sealgate(t, "queue", "show", id, "--config", cfg); code != 1 || !strings.Contains(stderr, "no such message") {
		t.Errorf("queue show after delete: exit %d: %s", code, stderr)
	}
}

// seedSpool puts one message into a stopped server's spool, as an
// earlier run would have left it.
func seedSpool(t *testing.T, dataDir string) {
	t.Helper()
	store, err := queue.Open(queue.Options{
		Path:    filepath.Join(dataDir, "spool.db"),
		KeyFile: filepath.Join(dataDir, "spool.key"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	_, err = store.Enqueue(context.Background(), queue.Envelope{
		From:       "seeded@org.test",
		Recipients: []string{"bob@dest.test"},
		ClientAddr: "127.0.0.1:40000",
	}, []byte("Subject: seeded\r\n\r\nseeded body\r\n"))
	if err != nil {
		t.Fatal(err)
	}
}

func TestHashPassword(t *testing.T) {
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetArgs([]string{"config", "hash-password"})
	root.SetIn(strings.NewReader("s3cret passphrase\n"))
	root.SetOut(&out)
	root.SetErr(&errOut)
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	hash := strings.TrimSpace(out.String())
	if !config.CheckPassword(hash, "s3cret passphrase") || config.CheckPassword(hash, "other") {
		t.Errorf("hash %q does not check", hash)
	}
	if strings.Contains(out.String()+errOut.String(), "s3cret") {
		t.Error("the password was echoed")
	}
	// The printed hash is accepted by the config.
	if _, err := config.Parse("t.yaml", []byte("inbound:\n  auth:\n    users:\n      - {username: u, password_hash: \""+hash+"\"}\n")); err != nil {
		t.Errorf("config refuses the hash: %v", err)
	}
}

// TestQueueListPages: --limit and --after walk the spool in arrival
// order, and the JSON stays one valid array however it is paged.
func TestQueueListPages(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sealgate.yaml")
	writeFile(t, cfg, "data_dir: "+filepath.Join(dir, "data")+"\n")
	for range 5 {
		seedSpool(t, filepath.Join(dir, "data"))
	}
	page := func(args ...string) []string {
		t.Helper()
		code, stdout, stderr := sealgate(t, append([]string{"queue", "list", "--json", "--config", cfg}, args...)...)
		var msgs []struct{ ID string }
		if err := json.Unmarshal([]byte(stdout), &msgs); code != 0 || err != nil {
			t.Fatalf("queue list %v: exit %d, %v: %s%s", args, code, err, stdout, stderr)
		}
		var ids []string
		for _, m := range msgs {
			ids = append(ids, m.ID)
		}
		return ids
	}
	all := page()
	if len(all) != 5 {
		t.Fatalf("%d messages, want 5", len(all))
	}
	first := page("--limit", "2")
	second := page("--limit", "2", "--after", first[1])
	rest := page("--after", second[1])
	if got := strings.Join(append(append(first, second...), rest...), " "); got != strings.Join(all, " ") {
		t.Errorf("pages %v + %v + %v, want %v", first, second, rest, all)
	}
	if len(page("--after", all[4])) != 0 {
		t.Error("a page after the last message is not empty")
	}
}

// TestQueueStatesRefusalsAndPrefixes: queue list filters by state and
// names the recipients; a held message is not retried (and says why), a
// finished one is not held; a unique ID prefix names a message and an
// ambiguous one is refused with the candidates.
func TestQueueStatesRefusalsAndPrefixes(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sealgate.yaml")
	writeFile(t, cfg, "data_dir: "+filepath.Join(dir, "data")+"\n")
	seedSpool(t, filepath.Join(dir, "data")) // creates the spool and its key
	store, err := queue.Open(queue.Options{Path: filepath.Join(dir, "data", "spool.db"), KeyFile: filepath.Join(dir, "data", "spool.key")})
	if err != nil {
		t.Fatal(err)
	}
	put := func(rcpt string) string {
		id, err := store.Enqueue(context.Background(), queue.Envelope{From: "alice@org.test", Recipients: []string{rcpt}}, []byte("Subject: x\r\n\r\nx\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	held, done := put("held@dest.test"), put("done@dest.test")
	if err := store.Hold(held); err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.RecordAttempt(done, queue.Attempt{Destination: "dest.test", Recipients: []string{"done@dest.test"}},
		[]queue.RcptOutcome{{Address: "done@dest.test", Delivered: true, Code: 250}}, nil); err != nil {
		t.Fatal(err)
	}
	store.Close()

	list := func(state string) string {
		t.Helper()
		code, stdout, stderr := sealgate(t, "queue", "list", "--state", state, "--config", cfg)
		if code != 0 {
			t.Fatalf("queue list --state %s: exit %d: %s", state, code, stderr)
		}
		return stdout
	}
	for state, want := range map[string]string{"pending": "bob@dest.test", "held": "held@dest.test", "delivered": "done@dest.test"} {
		out := list(state)
		if !strings.Contains(out, want) || !strings.Contains(out, "1 messages") {
			t.Errorf("queue list --state %s does not show only %s:\n%s", state, want, out)
		}
	}
	if out := list("bounced"); !strings.Contains(out, "0 messages") {
		t.Errorf("queue list --state bounced:\n%s", out)
	}
	if code, _, stderr := sealgate(t, "queue", "list", "--state", "stuck", "--config", cfg); code != 2 || !strings.Contains(stderr, "pending") {
		t.Errorf("queue list --state stuck: exit %d: %s", code, stderr)
	}

	// A unique prefix names the message; the command prints the whole ID.
	code, stdout, stderr := sealgate(t, "queue", "retry", held[:len(held)-1], "--config", cfg)
	if code != 1 || !strings.Contains(stderr, held+" is held (by admin)") || !strings.Contains(stderr, "release") {
		t.Errorf("queue retry of a held message: exit %d: %s%s", code, stdout, stderr)
	}
	if code, _, stderr := sealgate(t, "queue", "hold", done, "--config", cfg); code != 1 || !strings.Contains(stderr, "finished") {
		t.Errorf("queue hold of a delivered message: exit %d: %s", code, stderr)
	}
	common := 0
	for common < len(held) && held[common] == done[common] {
		common++
	}
	code, _, stderr = sealgate(t, "queue", "show", held[:common], "--config", cfg)
	if code != 1 || !strings.Contains(stderr, "matches") || !strings.Contains(stderr, held) || !strings.Contains(stderr, done) {
		t.Errorf("queue show with an ambiguous prefix: exit %d: %s", code, stderr)
	}
	if code, stdout, _ := sealgate(t, "queue", "release", held[:len(held)-2], "--config", cfg); code != 0 || !strings.Contains(stdout, held+" released") {
		t.Errorf("queue release by prefix: exit %d: %s", code, stdout)
	}
}

// TestQueueReapplyAndBounceOnStoppedServer: with the server stopped,
// queue reapply decides queued mail under the config file's policy (the
// tag it arrived with still counts; a hold its rules no longer make is
// lifted), and queue delete --bounce leaves a DSN to the sender.
func TestQueueReapplyAndBounceOnStoppedServer(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sealgate.yaml")
	writeFile(t, cfg, "hostname: gw.test\ndata_dir: "+filepath.Join(dir, "data")+"\npolicy:\n  escalation_chain: [tls-verified, bounce]\n")
	seedSpool(t, filepath.Join(dir, "data"))
	store, err := queue.Open(queue.Options{Path: filepath.Join(dir, "data", "spool.db"), KeyFile: filepath.Join(dir, "data", "spool.key")})
	if err != nil {
		t.Fatal(err)
	}
	tagged, err := store.Enqueue(context.Background(), queue.Envelope{From: "alice@org.test", Recipients: []string{"bob@dest.test"},
		ClientAddr: "192.0.2.7:4000", AuthUser: "alice",
		Decisions: []queue.RcptDecision{{Chain: []string{"pgp", "smime", "escrow"}, By: "tag [secure]"}},
		Asked:     &queue.Asked{Tags: []string{"[secure]"}, Trusted: true},
		Hold:      "old-review-rule"}, []byte("Subject: results\r\n\r\nx\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	store.Close()

	code, stdout, stderr := sealgate(t, "queue", "reapply", "--all", "--config", cfg)
	if code != 0 || !strings.Contains(stdout, tagged+": bob@dest.test: [tls-verified, bounce] by tag [secure] (was [pgp, smime, escrow] at pgp)") ||
		!strings.Contains(stdout, "bob@dest.test: [tls] by default (unchanged)") || !strings.Contains(stdout, "2 messages decided again") {
		t.Errorf("queue reapply --all: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, _ = sealgate(t, "queue", "show", tagged, "--config", cfg)
	if code != 0 || strings.Contains(stdout, "Held:") || !strings.Contains(stdout, "policy chain [tls-verified, bounce] by tag [secure]") ||
		!strings.Contains(stdout, "policy no longer holds it") {
		t.Errorf("queue show after reapply: exit %d\n%s", code, stdout)
	}

	code, stdout, stderr = sealgate(t, "queue", "delete", tagged, "--bounce", "--config", cfg)
	if code != 0 || !strings.Contains(stdout, tagged+" deleted; DSN ") {
		t.Fatalf("queue delete --bounce: exit %d: %s%s", code, stdout, stderr)
	}
	dsnID := strings.Fields(strings.SplitN(stdout, "DSN ", 2)[1])[0]
	code, stdout, _ = sealgate(t, "queue", "show", dsnID, "--config", cfg)
	if code != 0 || !strings.Contains(stdout, "From:      <>") || !strings.Contains(stdout, "alice@org.test") {
		t.Errorf("the DSN: exit %d\n%s", code, stdout)
	}
	code, stdout, _ = sealgate(t, "queue", "show", tagged, "--config", cfg)
	if code != 0 || !strings.Contains(stdout, "bounced") || !strings.Contains(stdout, "deleted by the mail administrator") {
		t.Errorf("the bounced message: exit %d\n%s", code, stdout)
	}
	if code, _, stderr := sealgate(t, "queue", "reapply", tagged, "--config", cfg); code != 1 || !strings.Contains(stderr, "finished") {
		t.Errorf("queue reapply of a finished message: exit %d: %s", code, stderr)
	}
}

// TestConfigCheckWarnings: config check warns — exit 0, on standard
// error, naming file, line and key — about a trusted network holding a
// cloud's shared sending range and a listener certificate that has
// expired or does not cover hostname; a config without either is plain ok.
func TestConfigCheckWarnings(t *testing.T) {
	dir := t.TempDir()
	cert, key, _, _ := writeCertificate(t, dir, "old@org.test", time.Now().Add(-time.Hour))
	cfg := filepath.Join(dir, "sealgate.yaml")
	writeFile(t, cfg, "hostname: relay.example.org\ndata_dir: data\ninbound:\n  trusted_networks: [\"127.0.0.0/8\", \"40.92.0.0/15\"]\n  tls: {cert_file: "+cert+", key_file: "+key+"}\n")
	code, stdout, stderr := sealgate(t, "config", "check", cfg)
	for _, want := range []string{
		cfg + ":4: inbound.trusted_networks[1]: 40.92.0.0/15 holds Microsoft 365's shared sending range 40.92.0.0/15: every Microsoft 365 tenant could relay",
		"inbound.tenants instead",
		cfg + ":5: inbound.tls.cert_file: " + cert + " expired on ",
		`which do not cover hostname "relay.example.org"`,
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("config check warnings lack %q:\n%s", want, stderr)
		}
	}
	if code != 0 || !strings.Contains(stdout, "ok, 3 warnings") {
		t.Errorf("config check: exit %d: %s", code, stdout)
	}

	good := filepath.Join(dir, "good.yaml")
	goodCert, goodKey := filepath.Join(dir, "relay.pem"), filepath.Join(dir, "relay.key")
	if err := certs.EnsureSelfSigned(goodCert, goodKey, []string{"relay.example.org"}); err != nil {
		t.Fatal(err)
	}
	writeFile(t, good, "hostname: relay.example.org\ndata_dir: data\ninbound:\n  tls: {cert_file: relay.pem, key_file: relay.key}\n")
	if code, stdout, stderr := sealgate(t, "config", "check", good); code != 0 || stdout != good+": ok\n" || stderr != "" {
		t.Errorf("config check of a config without warnings: exit %d: %s%s", code, stdout, stderr)
	}
}
