package policy

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/config"
)

func testEngine(t *testing.T, rules []config.Rule, mutate func(*config.Policy)) *Engine {
	t.Helper()
	c, err := config.Default()
	if err != nil {
		t.Fatal(err)
	}
	c.Policy.Rules = rules
	if mutate != nil {
		mutate(&c.Policy)
	}
	e, err := Compile(c.Policy)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestEngineRules(t *testing.T) {
	e := testEngine(t, []config.Rule{
		{Name: "partners", Match: config.RuleMatch{To: []string{"partner.test", "*.partner.test"}}, Chain: []string{"tls-verified", "bounce"}},
		{Name: "billing", Match: config.RuleMatch{From: []string{"billing@*"}}, Chain: []string{"escrow"}},
		{Name: "mark-ehr", Match: config.RuleMatch{ClientNetwork: []string{"10.9.0.0/16"}}, AddHeaders: map[string]string{"X-Source": "ehr"}, Continue: true},
		{Name: "records", Match: config.RuleMatch{Subject: `MRN-\d{6}`}, Chain: []string{"tls-verified", "pgp", "escrow"}},
		{Name: "review", Match: config.RuleMatch{Header: map[string]string{"X-Priority": "^1"}}, Hold: true, Continue: true},
		{Name: "no-ssn", Match: config.RuleMatch{Subject: `\d{3}-\d{2}-\d{4}`}, Reject: "no SSNs in subjects"},
		{Name: "big", Match: config.RuleMatch{MinSize: 1000}, Chain: []string{"tls-verified"}},
	}, nil)
	for _, tc := range []struct {
		name  string
		in    Input
		chain string
		rules string
	}{
		{"default", Input{From: "a@org.test", Recipients: []string{"b@else.test"}}, "[tls]", ""},
		{"domain glob", Input{From: "a@org.test", Recipients: []string{"b@mx.partner.test"}}, "[tls-verified, bounce]", "partners"},
		{"first match wins", Input{From: "billing@org.test", Recipients: []string{"b@partner.test"}}, "[tls-verified, bounce]", "partners"},
		{"sender glob", Input{From: "billing@org.test", Recipients: []string{"b@else.test"}}, "[escrow]", "billing"},
		{"continue then subject", Input{From: "x@org.test", Recipients: []string{"b@else.test"}, ClientIP: netip.MustParseAddr("10.9.1.1"), Subject: "Lab MRN-123456"}, "[tls-verified, pgp, escrow]", "mark-ehr,records"},
		{"size", Input{From: "x@org.test", Recipients: []string{"b@else.test"}, Size: 5000}, "[tls-verified]", "big"},
	} {
		d := e.Decide(tc.in)
		rd := d.Recipients[0]
		if rd.Chain.String() != tc.chain || strings.Join(rd.Rules, ",") != tc.rules {
			t.Errorf("%s: chain %s rules %v (%v), want %s %s", tc.name, rd.Chain, rd.Rules, rd.Reasons, tc.chain, tc.rules)
		}
	}
	d := e.Decide(Input{From: "x@org.test", Recipients: []string{"b@else.test"}, ClientIP: netip.MustParseAddr("10.9.1.1"),
		Subject: "SSN 123-45-6789", Header: map[string][]string{"X-Priority": {"1 (Highest)"}}})
	if d.Reject != "no SSNs in subjects" || d.RejectRule != "no-ssn" || d.Hold != "review" || d.AddHeaders["X-Source"] != "ehr" {
		t.Errorf("message actions: %+v", d)
	}
}

func TestEngineTagsAndFloor(t *testing.T) {
	rules := []config.Rule{
		{Name: "partners", Match: config.RuleMatch{To: []string{"partner.test"}}, Chain: []string{"tls-verified", "bounce"}},
		{Name: "billing", Match: config.RuleMatch{From: []string{"billing@*"}}, Chain: []string{"escrow"}},
	}
	e := testEngine(t, rules, nil)
	tagged := func(from, to string, tags ...string) RecipientDecision {
		return e.Decide(Input{From: from, Recipients: []string{to}, Tags: tags}).Recipients[0]
	}
	if rd := tagged("a@org.test", "b@else.test", "[secure]"); rd.Chain.String() != "[pgp, smime, escrow]" {
		t.Errorf("[secure] escalates: %v %v", rd.Chain, rd.Reasons)
	}
	if rd := tagged("a@org.test", "b@partner.test", "[escrow]"); rd.Chain.String() != "[escrow]" {
		t.Errorf("[escrow] over a TLS rule: %v", rd.Chain)
	}
	if rd := tagged("billing@org.test", "b@else.test", "[secure]"); rd.Chain.String() != "[pgp, smime, escrow]" {
		t.Errorf("equal strength tag: %v", rd.Chain)
	}
	if rd := e.Decide(Input{From: "a@org.test", Recipients: []string{"b@else.test"}, HeaderEscalation: "escrow"}).Recipients[0]; rd.Chain.String() != "[escrow]" {
		t.Errorf("header escalation: %v", rd.Chain)
	}

	// What chose the chain is said: a tag is named as found, not as rules.
	for _, c := range []struct {
		rd RecipientDecision
		by string
	}{
		{tagged("a@org.test", "b@else.test"), "default"},
		{tagged("a@org.test", "b@partner.test"), "rule partners"},
		{tagged("a@org.test", "b@else.test", "[secure]"), "tag [secure]"},
		{tagged("a@org.test", "b@partner.test", "[secure]"), "tag [secure]"},
		{tagged("a@org.test", "b@partner.test", "[escrow]"), "tag [escrow]"},
		{e.Decide(Input{From: "a@org.test", Recipients: []string{"b@else.test"}, HeaderEscalation: "escrow"}).Recipients[0], "X-Sealgate-Escalate: escrow"},
	} {
		if c.rd.By != c.by {
			t.Errorf("%s %v: by %q, want %q (%v)", c.rd.Recipient, c.rd.Chain, c.rd.By, c.by, c.rd.Reasons)
		}
	}

	// The floor: nothing goes below tls-verified, not a rule, not a tag.
	floored := testEngine(t, []config.Rule{{Name: "lax", Match: config.RuleMatch{To: []string{"lax.test"}}, Chain: []string{"tls", "drop"}}},
		func(p *config.Policy) { p.Minimum = "tls-verified"; p.Tags["[plain]"] = "tls" })
	if rd := floored.Decide(Input{From: "a@org.test", Recipients: []string{"b@lax.test"}}).Recipients[0]; rd.Chain.String() != "[tls-verified, drop]" {
		t.Errorf("floor over a rule: %v", rd.Chain)
	}
	if rd := floored.Decide(Input{From: "a@org.test", Recipients: []string{"b@else.test"}, Tags: []string{"[plain]"}}).Recipients[0]; rd.Chain.String() != "[tls-verified]" || rd.By != "policy.minimum tls-verified" {
		t.Errorf("a tag below the floor: %v by %q %v", rd.Chain, rd.By, rd.Reasons)
	}
}

func TestEngineForwarding(t *testing.T) {
	e := testEngine(t, []config.Rule{{Name: "billing", Match: config.RuleMatch{From: []string{"billing@*"}}, Chain: []string{"escrow"}}},
		func(p *config.Policy) { p.Forwarding = "tls-only" })
	fwd, by := AutoForwarded(map[string][]string{"X-Ms-Exchange-Organization-Autoforwarded": {"true"}})
	if !fwd || by != "X-MS-Exchange-Organization-AutoForwarded" {
		t.Fatalf("M365 marker: %v %q", fwd, by)
	}
	d := e.Decide(Input{From: "billing@org.test", Recipients: []string{"b@else.test"}, Tags: []string{"[secure]"}, Forwarded: true, ForwardedBy: by})
	if rd := d.Recipients[0]; rd.Chain.String() != "[tls-verified, drop]" {
		t.Errorf("forwarded mail: %v %v", rd.Chain, rd.Reasons)
	}
	for hdr, want := range map[string]bool{
		"Auto-Submitted: auto-forwarded": true, "Auto-Submitted: auto-replied": false,
		"X-Forwarded-To: x@y": true, "Resent-From: x@y": true,
		"X-MS-Exchange-Generated-Message-Source: Mailbox Rules Agent": true, "X-Mailer: Outlook": false,
	} {
		k, v, _ := strings.Cut(hdr, ": ")
		if got, _ := AutoForwarded(map[string][]string{k: {v}}); got != want {
			t.Errorf("AutoForwarded(%s) = %v", hdr, got)
		}
	}
}

func FuzzRuleMatching(f *testing.F) {
	e := func() *Engine {
		c, _ := config.Default()
		c.Policy.Rules = []config.Rule{
			{Name: "a", Match: config.RuleMatch{To: []string{"*.x.test", "y@*"}, Subject: `(?i)secret`}, Chain: []string{"escrow"}},
			{Name: "b", Match: config.RuleMatch{Header: map[string]string{"X-A": "b+"}}, Chain: []string{"tls-verified", "bounce"}, Continue: true},
		}
		en, _ := Compile(c.Policy)
		return en
	}()
	f.Add("a@b.x.test", "secret plan", "bbb")
	f.Fuzz(func(t *testing.T, rcpt, subject, hdr string) {
		d := e.Decide(Input{From: "s@o.test", Recipients: []string{rcpt}, Subject: subject, Header: map[string][]string{"X-A": {hdr}}})
		if len(d.Recipients) != 1 || len(d.Recipients[0].Chain) == 0 {
			t.Fatalf("no chain for %q", rcpt)
		}
	})
}

func TestEngineContentAndAttachments(t *testing.T) {
	e := testEngine(t, []config.Rule{
		{Name: "records", Match: config.RuleMatch{Content: `MRN-\d{6}`}, Chain: []string{"escrow"}},
		{Name: "files", Match: config.RuleMatch{HasAttachments: "yes"}, Chain: []string{"tls-verified"}},
		{Name: "listed", Match: config.RuleMatch{ToFileEntries: []string{"*@clinic.test", "lab.test"}}, Chain: []string{"tls-verified", "bounce"}},
	}, nil)
	if need, limit := e.NeedsBody(); !need || limit != 1<<20 {
		t.Errorf("NeedsBody = %v %d", need, limit)
	}
	chain := func(in Input) string { return e.Decide(in).Recipients[0].Chain.String() }
	if c := chain(Input{From: "a@o.test", Recipients: []string{"b@x.test"}, Text: "see MRN-123456"}); c != "[escrow]" {
		t.Errorf("content rule: %s", c)
	}
	if c := chain(Input{From: "a@o.test", Recipients: []string{"b@x.test"}, HasAttachments: true}); c != "[tls-verified]" {
		t.Errorf("attachment rule: %s", c)
	}
	if c := chain(Input{From: "a@o.test", Recipients: []string{"b@lab.test"}}); c != "[tls-verified, bounce]" {
		t.Errorf("recipient list file: %s", c)
	}
}
