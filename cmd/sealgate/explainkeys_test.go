package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// explain with a stopped server's data dir: the key store says which
// method each recipient of a [secure] message gets, and why.
func TestPolicyExplainSaysWhichMethodEachRecipientGets(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	cfg := filepath.Join(dir, "sealgate.yaml")
	writeFile(t, cfg, "data_dir: "+data+"\nportal:\n  public_url: https://secure.org.test\n")
	seedSpool(t, data)
	pub, _, fp := writeKey(t, dir, "bob@dest.test")
	cert, _, certFP, serial := writeCertificate(t, dir, "carol@partner.test", time.Now().Add(24*time.Hour))
	if code, _, stderr := sealgate(t, "keys", "import", pub, cert, "--config", cfg); code != 0 {
		t.Fatalf("keys import: exit %d: %s", code, stderr)
	}

	code, out, stderr := sealgate(t, "policy", "explain", "--config", cfg, "--from", "alice@org.test",
		"--to", "bob@dest.test", "--to", "carol@partner.test", "--to", "dave@else.test", "--subject", "Lab results [secure]")
	if code != 0 {
		t.Fatalf("explain: exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		"Keys:       spool " + filepath.Join(data, "spool.db") + "\n",
		"bob@dest.test\n  chain: [pgp, smime, escrow], by tag [secure]\n",
		"  will get: pgp\n    pgp: key " + fp + " (ECDH-Curve25519, imported)\n" +
			"    smime skipped: no S/MIME certificate\n    escrow (notice with a portal link)\n",
		"carol@partner.test\n  chain: [pgp, smime, escrow]",
		"  will get: pgp if discovery finds a key, else smime\n" +
			"    pgp skipped: no OpenPGP key in the store; discovery (WKD) would be tried at delivery\n" +
			"    smime: certificate serial " + serial + " fingerprint " + certFP + " (EC-P256, imported)\n",
		"dave@else.test\n", "  will get: pgp if discovery finds a key, else escrow\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain lacks %q:\n%s", want, out)
		}
	}

	// --json: the same, one extra field per recipient.
	code, out, _ = sealgate(t, "policy", "explain", "--json", "--config", cfg, "--from", "alice@org.test",
		"--to", "carol@partner.test", "--subject", "[secure] x")
	var res struct {
		KeyStore   string `json:"key_store"`
		KeysRead   bool   `json:"keys_read"`
		Recipients []struct {
			Recipient string
			Chain     []string
			WillGet   string `json:"will_get"`
			Methods   []struct{ Method, Applies, Why string }
		}
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != 0 || !res.KeysRead || len(res.Recipients) != 1 {
		t.Fatalf("explain --json: exit %d %v\n%s", code, err, out)
	}
	if r := res.Recipients[0]; len(r.Methods) != 3 || r.Methods[0].Applies != "maybe" || r.Methods[1].Method != "smime" ||
		r.Methods[1].Applies != "yes" || !strings.Contains(r.Methods[1].Why, certFP) || r.Methods[2].Why != "escrow (notice with a portal link)" {
		t.Errorf("explain --json recipient: %+v", r)
	}

	// Two recipients of one domain travel together: pgp applies to the
	// group only when both have a key. Discovery off: no "maybe".
	noDisc := filepath.Join(dir, "nodisc.yaml")
	writeFile(t, noDisc, "data_dir: "+data+"\nkeys:\n  discovery: {wkd: false, openpgpkey: false}\n")
	code, out, _ = sealgate(t, "policy", "explain", "--config", noDisc, "--from", "alice@org.test",
		"--to", "bob@dest.test", "--to", "erin@dest.test", "--subject", "[secure] x")
	for _, want := range []string{
		"but the group moves on together (erin@dest.test: pgp skipped: no OpenPGP key in the store)",
		"    escrow not provided (needs escrow.enabled and portal.public_url)\n",
		"  will get: none: held (no method of the chain applies now), bounced at expiry\n",
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("explain of a group lacks %q:\n%s", want, out)
		}
	}
}

// Without a data dir there is no key store: explain says so and shows
// the chains as the policy decides them.
func TestPolicyExplainWithoutKeyStore(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sealgate.yaml")
	writeFile(t, cfg, "data_dir: "+filepath.Join(dir, "none")+"\n")
	code, out, stderr := sealgate(t, "policy", "explain", "--config", cfg, "--from", "alice@org.test", "--to", "bob@dest.test", "--subject", "[secure] x")
	if code != 0 || !strings.Contains(out, "Keys:       not read: no spool at "+filepath.Join(dir, "none", "spool.db")) ||
		!strings.Contains(out, "(methods not judged: the chains are shown as the policy decides them)") ||
		!strings.Contains(out, "bob@dest.test\n  chain: [pgp, smime, escrow]") || strings.Contains(out, "will get") {
		t.Errorf("explain without a key store: exit %d %s\n%s", code, stderr, out)
	}
	code, out, _ = sealgate(t, "policy", "explain", "--json", "--config", cfg, "--from", "alice@org.test", "--to", "bob@dest.test")
	if code != 0 || !strings.Contains(out, `"keys_read": false`) || strings.Contains(out, `"methods"`) {
		t.Errorf("explain --json without a key store:\n%s", out)
	}
}

// A chain this node can only hold on warns, with or without a key store:
// every method of it is off here, or (keys read) none applies now. A
// chain with a method that applies does not.
func TestPolicyExplainWarnsWhenAChainCanOnlyHold(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sealgate.yaml")
	writeFile(t, cfg, "data_dir: "+filepath.Join(dir, "none")+"\nkeys: {pgp: false, smime: false}\n")
	code, out, _ := sealgate(t, "policy", "explain", "--config", cfg, "--from", "alice@org.test", "--to", "bob@dest.test", "--subject", "[secure] x")
	want := "WARNING: bob@dest.test: chain [pgp, smime, escrow] can only hold the message: pgp not provided (keys.pgp is off), " +
		"smime not provided (keys.smime is off), escrow not provided (needs escrow.enabled and portal.public_url); " +
		"it waits and bounces after queue.expiry (120h0m0s)"
	if code != 0 || !strings.Contains(out, want) || !strings.Contains(out, "sealgate queue reapply --all") {
		t.Errorf("explain of a chain that can only hold: exit %d\n%s", code, out)
	}
	code, out, _ = sealgate(t, "policy", "explain", "--json", "--config", cfg, "--from", "alice@org.test", "--to", "bob@dest.test", "--subject", "[secure] x")
	if code != 0 || !strings.Contains(out, `"warnings": [`) {
		t.Errorf("explain --json has no warnings:\n%s", out)
	}
	if code, out, _ := sealgate(t, "policy", "explain", "--config", cfg, "--from", "alice@org.test", "--to", "bob@dest.test", "--subject", "plain"); code != 0 || strings.Contains(out, "WARNING") {
		t.Errorf("explain of a [tls] chain warns: exit %d\n%s", code, out)
	}

	// Keys read, none for the recipient, discovery off, no escrow.
	data := filepath.Join(dir, "data")
	seedSpool(t, data)
	keyed := filepath.Join(dir, "keyed.yaml")
	writeFile(t, keyed, "data_dir: "+data+"\nkeys:\n  discovery: {wkd: false, openpgpkey: false}\n")
	code, out, _ = sealgate(t, "policy", "explain", "--config", keyed, "--from", "alice@org.test", "--to", "bob@dest.test", "--subject", "[secure] x")
	if code != 0 || !strings.Contains(out, "WARNING: bob@dest.test: no method of chain [pgp, smime, escrow] applies now") {
		t.Errorf("explain with keys read, none applying: exit %d\n%s", code, out)
	}
}
