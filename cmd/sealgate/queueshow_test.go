package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/queue"
)

// seedAttempts spools one message and records the given attempts for
// its one recipient, as a delivery run would have; it returns the ID.
func seedAttempts(t *testing.T, dataDir string, env queue.Envelope, atts ...queue.Attempt) string {
	t.Helper()
	store, err := queue.Open(queue.Options{
		Path:    filepath.Join(dataDir, "spool.db"),
		KeyFile: filepath.Join(dataDir, "spool.key"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	id, err := store.Enqueue(context.Background(), env, []byte("Subject: seeded\r\n\r\nbody\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range atts {
		a.Recipients = env.Recipients
		o := queue.RcptOutcome{Address: env.Recipients[0], Status: "4.4.1", Message: a.Reply}
		if _, _, err := store.RecordAttempt(id, a, []queue.RcptOutcome{o}, nil); err != nil {
			t.Fatal(err)
		}
	}
	return id
}

// TestQueueShowAttemptWithoutConnection: an attempt that reached no
// server is not "plaintext": it says why no connection was made, and
// its JSON has no TLS facts.
func TestQueueShowAttemptWithoutConnection(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sealgate.yaml")
	writeFile(t, cfg, "data_dir: "+filepath.Join(dir, "data")+"\n")
	id := seedAttempts(t, filepath.Join(dir, "data"), queue.Envelope{From: "a@org.test", Recipients: []string{"bob@dest.test"}},
		queue.Attempt{Destination: "dest.test", NoConnection: "held by policy (method escrow)", Reply: "policy: escrow: needs escrow"},
		queue.Attempt{Destination: "dest.test", TLSLevel: "dane-only", TLSRequiredBy: "tls_policy dane-only (dest.test)",
			NoConnection: "TLS requirement not met", Reply: "TLS level dane-only required … not met"},
		queue.Attempt{Destination: "dest.test", TLSLevel: "may", Reply: "no mail host of dest.test accepted a connection"}, // before no_connection existed
		queue.Attempt{Destination: "dest.test", NoConnection: "no mail host took a session: refused the session",
			Reply: "no mail host of dest.test took a session (refused the session): mx.dest.test[127.0.0.2]: 554 5.3.2 go away"},
		queue.Attempt{Destination: "dest.test", MXHost: "mx.dest.test", IP: "127.0.0.2", TLSLevel: "may", Reply: "451 4.3.0 try later"})

	code, stdout, stderr := sealgate(t, "queue", "show", id, "--config", cfg)
	if code != 0 {
		t.Fatalf("queue show: exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		"to dest.test: no connection made (held by policy (method escrow))\n",
		"to dest.test: no connection made (TLS requirement not met)\n      TLS level dane-only, required by tls_policy dane-only (dest.test)\n",
		"to dest.test: no connection made (reason not recorded)\n",
		"to dest.test: no session opened (no mail host took a session: refused the session)\n", // it answered
		"to dest.test via mx.dest.test [127.0.0.2], plaintext\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("queue show lacks %q:\n%s", want, stdout)
		}
	}
	if n := strings.Count(stdout, "plaintext"); n != 1 {
		t.Errorf("%d attempts shown as plaintext, want the one that connected:\n%s", n, stdout)
	}
	if n := strings.Count(stdout, "TLS level may"); n != 1 {
		t.Errorf("%d attempts show the default TLS level, want the one that connected:\n%s", n, stdout)
	}

	code, stdout, _ = sealgate(t, "queue", "show", id, "--json", "--config", cfg)
	var shown struct {
		Events []struct {
			Attempt map[string]any `json:"attempt"`
		} `json:"events"`
	}
	if err := json.Unmarshal([]byte(stdout), &shown); code != 0 || err != nil {
		t.Fatalf("queue show --json: exit %d, %v:\n%s", code, err, stdout)
	}
	var atts []map[string]any
	for _, e := range shown.Events {
		if e.Attempt != nil {
			atts = append(atts, e.Attempt)
		}
	}
	if len(atts) != 5 {
		t.Fatalf("%d attempts in JSON, want 5:\n%s", len(atts), stdout)
	}
	for i, a := range atts[:2] {
		for _, k := range []string{"tls_version", "cipher", "cert_verified", "mx_host", "ip"} {
			if _, ok := a[k]; ok {
				t.Errorf("attempt %d without a connection has %s: %v", i, k, a)
			}
		}
		if a["no_connection"] == nil {
			t.Errorf("attempt %d does not say why no connection was made: %v", i, a)
		}
	}
}

// TestQueueShowChainByTag: a chain a tag chose says so; one a rule chose
// names the rule; a record from before "by" existed names its rules.
func TestQueueShowChainByTag(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sealgate.yaml")
	writeFile(t, cfg, "data_dir: "+filepath.Join(dir, "data")+"\n")
	id := seedAttempts(t, filepath.Join(dir, "data"), queue.Envelope{From: "a@org.test",
		Recipients: []string{"bob@dest.test", "carol@partner.test", "dave@old.test"},
		Decisions: []queue.RcptDecision{
			{Chain: []string{"pgp", "smime", "escrow"}, By: "tag [secure]"},
			{Chain: []string{"tls-verified", "bounce"}, Rules: []string{"partners"}, By: "rule partners"},
			{Chain: []string{"tls-verified"}, Rules: []string{"legacy"}},
		}})
	code, stdout, stderr := sealgate(t, "queue", "show", id, "--config", cfg)
	if code != 0 {
		t.Fatalf("queue show: exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		"bob@dest.test: policy chain [pgp, smime, escrow] by tag [secure]\n",
		"carol@partner.test: policy chain [tls-verified, bounce] by rule partners\n",
		"dave@old.test: policy chain [tls-verified] by rules legacy\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("queue show lacks %q:\n%s", want, stdout)
		}
	}
}
