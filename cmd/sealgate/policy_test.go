package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

func TestPolicyExplainAndCheck(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "sealgate.yaml")
	writeFile(t, cfgPath, `policy:
  rules:
    - name: partners
      match: {to: [partner.test]}
      chain: [tls-verified, bounce]
    - name: billing
      match: {from: ["billing@*"]}
      chain: [escrow]
`)
	code, out, errOut := sealgate(t, "policy", "explain", "--config", cfgPath, "--from", "billing@org.test",
		"--to", "bob@partner.test", "--to", "carol@else.test", "--subject", "Invoice [SECURE]")
	if code != 0 {
		t.Fatalf("explain: exit %d %s", code, errOut)
	}
	for _, want := range []string{
		"Subject:    Invoice\n", "Tags:       [secure]",
		"bob@partner.test\n  chain: [pgp, smime, escrow], by tag [secure]\n  rules: partners",
		"carol@else.test\n  chain: [pgp, smime, escrow], by tag [secure]\n  rules: billing",
		"tag [secure]: [pgp, smime, escrow]",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain output lacks %q:\n%s", want, out)
		}
	}

	eml := filepath.Join(dir, "fwd.eml")
	writeFile(t, eml, "From: Alice <alice@org.test>\r\nTo: bob@partner.test\r\nSubject: hi\r\nAuto-Submitted: auto-forwarded\r\n\r\nbody\r\n")
	code, out, _ = sealgate(t, "policy", "explain", "--config", cfgPath, "--eml", eml, "--json")
	var res struct {
		Forwarding string
		Recipients []struct {
			Recipient string
			Chain     []string
		}
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != 0 {
		t.Fatalf("explain --eml --json: exit %d %v\n%s", code, err, out)
	}
	if !strings.HasPrefix(res.Forwarding, "auto-forwarded (Auto-Submitted") || len(res.Recipients) != 1 || res.Recipients[0].Recipient != "bob@partner.test" {
		t.Errorf("explain --eml: %+v", res)
	}

	// A body part it cannot read: the content rule is assumed to match,
	// and explain says why.
	scanCfg := filepath.Join(dir, "scan.yaml")
	writeFile(t, scanCfg, "policy:\n  rules:\n    - name: records\n      match: {content: 'MRN-\\d{6}'}\n      chain: [escrow]\n")
	hidden := filepath.Join(dir, "hidden.eml")
	writeFile(t, hidden, "From: alice@org.test\r\nTo: bob@else.test\r\nSubject: lab\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-private\r\n\r\nzzz\r\n--b1--\r\n")
	code, out, errOut = sealgate(t, "policy", "explain", "--config", scanCfg, "--eml", hidden)
	for _, want := range []string{
		`Not read:   body not read whole (part 1: cannot decode: encoding error: unhandled encoding "x-private")`,
		"bob@else.test\n  chain: [escrow], by rule records (assumed to match: body not read whole)\n  rules: records",
		"rule records (assumed to match: body not read whole): [escrow]",
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("explain of an unreadable body lacks %q (exit %d %s):\n%s", want, code, errOut, out)
		}
	}

	if code, out, _ := sealgate(t, "policy", "check", cfgPath); code != 0 || !strings.Contains(out, "2 rules ok") {
		t.Errorf("policy check: %d %s", code, out)
	}
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, "policy:\n  rules:\n    - name: broken\n      match: {subject: '(unclosed'}\n      chain: [tls, teleport]\n")
	code, _, errOut = sealgate(t, "policy", "check", bad)
	if code != 2 || !strings.Contains(errOut, `bad.yaml:4: policy.rules[0].match.subject: rule "broken": bad regular expression`) ||
		!strings.Contains(errOut, `policy.rules[0].chain[1]: rule "broken": unknown method "teleport"`) {
		t.Errorf("policy check of a bad file: exit %d\n%s", code, errOut)
	}
}
