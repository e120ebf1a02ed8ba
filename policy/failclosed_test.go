package policy

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/config"
)

// mixed builds a multipart/mixed message (boundary "b1") of raw parts,
// each its own header, blank line and body.
func mixed(parts ...string) []byte {
	var b strings.Builder
	b.WriteString("From: a@org.test\r\nTo: p@x.test\r\nSubject: results\r\nMIME-Version: 1.0\r\n")
	b.WriteString("Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n")
	for _, p := range parts {
		b.WriteString("--b1\r\n" + p + "\r\n")
	}
	b.WriteString("--b1--\r\n")
	return []byte(b.String())
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// The part that carries what a content rule looks for.
var mrnPart = "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64("Patient MRN-123456, results attached.")

func recordsEngine(t *testing.T, mutate func(*config.Policy), rules ...config.Rule) *Engine {
	t.Helper()
	rules = append(rules, config.Rule{Name: "records", Match: config.RuleMatch{Content: `MRN-\d{6}`}, Chain: []string{"escrow"}})
	return testEngine(t, rules, mutate)
}

func applyTo(e *Engine, msg []byte, rcpts ...string) Applied {
	if len(rcpts) == 0 {
		rcpts = []string{"p@x.test"}
	}
	res, _ := Apply(e, Session{From: "a@org.test", Recipients: rcpts, Trusted: true}, msg)
	return res
}

// TestMalformedFirstPartHidesNothing: a first part the scan cannot read
// does not stop it; the rule matches on the second part, and the
// decision says what could not be read.
func TestMalformedFirstPartHidesNothing(t *testing.T) {
	e := recordsEngine(t, nil)
	for _, tc := range []struct{ name, first, why string }{
		{"unknown transfer encoding", "Content-Type: text/plain\r\nContent-Transfer-Encoding: x-rot13\r\n\r\nuryyb", "x-rot13"},
		{"unknown charset", "Content-Type: text/plain; charset=x-no-such-charset\r\n\r\nhello", "x-no-such-charset"},
		{"broken base64", "Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!! not base64 !!!!", "base64"},
		{"unclosed inner boundary", "Content-Type: multipart/alternative; boundary=\"b2\"\r\n\r\n--b2\r\nContent-Type: text/plain\r\n\r\nhello", "part 1"},
		{"inner multipart without boundary", "Content-Type: multipart/alternative\r\n\r\nhello", "boundary"},
		{"duplicate Content-Type parameter", "Content-Type: text/plain; charset=utf-8; charset=koi8-r\r\n\r\nhello", "Content-Type unreadable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := applyTo(e, mixed(tc.first, mrnPart))
			rd := res.Recipients[0]
			if rd.Chain.String() != "[escrow]" || strings.Join(rd.Rules, ",") != "records" || strings.Contains(strings.Join(rd.Reasons, ""), "assumed") {
				t.Errorf("chain %s rules %v (%q), want [escrow] by records, found in part 2", rd.Chain, rd.Rules, rd.Reasons)
			}
			if len(res.ScanErrors) != 1 || !strings.Contains(res.ScanErrors[0], tc.why) {
				t.Errorf("scan errors %q, want one naming %q", res.ScanErrors, tc.why)
			}
		})
	}
}

// TestUnreadableContentCountsAsMatching: when the part a rule would
// match cannot be read, the rule is taken to match, and says so.
func TestUnreadableContentCountsAsMatching(t *testing.T) {
	nested := mrnPart
	for i := range maxScanDepth + 1 {
		bd := fmt.Sprintf("level-%02d", i)
		nested = "Content-Type: multipart/mixed; boundary=\"" + bd + "\"\r\n\r\n--" + bd + "\r\n" + nested + "\r\n--" + bd + "--"
	}
	many := make([]string, maxScanParts+1)
	for i := range many {
		many[i] = "Content-Type: text/plain\r\n\r\nhello"
	}
	long := "Content-Type: text/plain\r\n\r\n" + strings.Repeat("filler ", 1<<20/7+1) + "MRN-123456"
	for _, tc := range []struct {
		name string
		msg  []byte
		why  string
	}{
		{"match in an unknown encoding", mixed("Content-Type: text/plain\r\n\r\nhello", "Content-Type: text/plain\r\nContent-Transfer-Encoding: x-private\r\n\r\n"+b64("MRN-123456")), "x-private"},
		{"nested too deep", mixed(nested), "nested more than"},
		{"too many parts", mixed(append(many, mrnPart)...), "more than 1000 MIME parts"},
		{"past content_scan_bytes", mixed(long), "content_scan_bytes"},
		{"header the MIME reader refuses", []byte("From: a@org.test\r\nnot a header line\r\nSubject: x\r\n\r\nMRN-123456\r\n"), "header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := applyTo(recordsEngine(t, nil), tc.msg)
			rd := res.Recipients[0]
			if rd.Chain.String() != "[escrow]" || !strings.Contains(strings.Join(rd.Reasons, "\n"), "rule records (assumed to match: body not read whole)") {
				t.Errorf("chain %s (%q), want [escrow] by an assumed match", rd.Chain, rd.Reasons)
			}
			if len(res.ScanErrors) != 1 || !strings.Contains(res.ScanErrors[0], tc.why) || !strings.Contains(res.ScanErrors[0], "assumed to match") {
				t.Errorf("scan errors %q, want one naming %q", res.ScanErrors, tc.why)
			}
		})
	}
}

// TestReadableMessagesAreNotSuspect: ordinary MIME mail scans whole.
func TestReadableMessagesAreNotSuspect(t *testing.T) {
	e := recordsEngine(t, nil)
	alt := "Content-Type: multipart/alternative; boundary=\"b2\"\r\n\r\n--b2\r\nContent-Type: text/plain; charset=windows-1252\r\n" +
		"Content-Transfer-Encoding: quoted-printable\r\n\r\nBefund f=FCr M=FCller\r\n--b2\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Befund</p>\r\n--b2--"
	pdf := "Content-Type: application/pdf; name=\"a.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64("%PDF MRN-999999")
	fwd := "Content-Type: message/rfc822\r\n\r\nFrom: x@y.test\r\nSubject: fwd\r\nContent-Type: text/plain\r\n\r\nforwarded text MRN-777777"
	res := applyTo(e, mixed(alt, pdf))
	if rd := res.Recipients[0]; rd.Chain.String() != "[tls]" || len(res.ScanErrors) > 0 {
		t.Errorf("clean message: chain %s, scan errors %q", rd.Chain, res.ScanErrors)
	}
	// Text of a forwarded message shown inline is read like any text.
	res = applyTo(e, mixed(alt, fwd))
	if rd := res.Recipients[0]; rd.Chain.String() != "[escrow]" || len(res.ScanErrors) > 0 {
		t.Errorf("inline forward: chain %s, scan errors %q", rd.Chain, res.ScanErrors)
	}
}

// TestAssumedMatchNeitherLowersNorHides: a permissive content rule taken
// to match does not end the walk or lower the chain, and a strict one
// is not lowered by a later rule; its reject applies.
func TestAssumedMatchNeitherLowersNorHides(t *testing.T) {
	unreadable := mixed("Content-Type: text/plain\r\nContent-Transfer-Encoding: x-private\r\n\r\nzzz")
	e := testEngine(t, []config.Rule{
		{Name: "newsletters", Match: config.RuleMatch{Content: `unsubscribe`}, Chain: []string{"tls"}},
		{Name: "partners", Match: config.RuleMatch{To: []string{"partner.test"}}, Chain: []string{"tls-verified", "bounce"}},
	}, nil)
	if rd := applyTo(e, unreadable, "b@partner.test").Recipients[0]; rd.Chain.String() != "[tls-verified, bounce]" || strings.Join(rd.Rules, ",") != "newsletters,partners" {
		t.Errorf("a later rule was hidden: %s %v %q", rd.Chain, rd.Rules, rd.Reasons)
	}
	e = recordsEngine(t, nil, config.Rule{Name: "no-cards", Match: config.RuleMatch{Content: `\d{16}`}, Reject: "no card numbers", Continue: true})
	e.rules = append(e.rules, rule{name: "partners", to: []string{"partner.test"}, chain: Chain{MethodTLSVerified}})
	res := applyTo(e, unreadable, "b@partner.test")
	if rd := res.Recipients[0]; rd.Chain.String() != "[escrow]" {
		t.Errorf("a later rule lowered an assumed match: %s %q", rd.Chain, rd.Reasons)
	}
	if res.Reject != "no card numbers" {
		t.Errorf("an assumed reject rule did not reject: %+v", res.Decision)
	}
}

// TestOnScanErrorChain: with on_scan_error set, a recipient whose rules
// looked at the unreadable body gets that chain (never a weaker one);
// one decided before any content rule is untouched.
func TestOnScanErrorChain(t *testing.T) {
	e := testEngine(t, []config.Rule{
		{Name: "partners", Match: config.RuleMatch{To: []string{"partner.test"}}, Chain: []string{"tls-verified", "bounce"}},
		{Name: "records", Match: config.RuleMatch{Content: `MRN-\d{6}`}, Chain: []string{"tls-verified"}},
	}, func(p *config.Policy) { p.OnScanError = []string{"escrow"} })
	unreadable := mixed("Content-Type: text/plain\r\nContent-Transfer-Encoding: x-private\r\n\r\nzzz")
	res := applyTo(e, unreadable, "a@else.test", "b@partner.test")
	if rd := res.Recipients[0]; rd.Chain.String() != "[escrow]" || !strings.Contains(strings.Join(rd.Reasons, "\n"), "x-private") || len(rd.Rules) != 0 {
		t.Errorf("on_scan_error not applied: %s %v %q", rd.Chain, rd.Rules, rd.Reasons)
	}
	if rd := res.Recipients[1]; rd.Chain.String() != "[tls-verified, bounce]" {
		t.Errorf("a recipient no content rule looked at: %s %q", rd.Chain, rd.Reasons)
	}
	if len(res.ScanErrors) != 1 || !strings.Contains(res.ScanErrors[0], "on_scan_error [escrow]") {
		t.Errorf("scan errors %q", res.ScanErrors)
	}
	// A real match on what was read decides as usual: the unread part
	// cannot change a first match.
	res = applyTo(e, mixed("Content-Type: text/plain\r\nContent-Transfer-Encoding: x-private\r\n\r\nzzz", mrnPart))
	if rd := res.Recipients[0]; rd.Chain.String() != "[tls-verified]" || strings.Join(rd.Rules, ",") != "records" {
		t.Errorf("real match under on_scan_error: %s %v %q", rd.Chain, rd.Rules, rd.Reasons)
	}
}

func FuzzScanBody(f *testing.F) {
	f.Add(mixed(mrnPart))
	f.Add(mixed("Content-Type: text/plain\r\nContent-Transfer-Encoding: x-rot13\r\n\r\nuryyb", mrnPart))
	f.Add(mixed("Content-Type: multipart/alternative; boundary=\"b2\"\r\n\r\n--b2\r\nContent-Type: text/plain\r\n\r\nhello", mrnPart))
	f.Add([]byte("From: a@org.test\r\nContent-Type: message/rfc822\r\n\r\nSubject: x\r\n\r\nMRN-123456\r\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		const limit = 4096
		scan := scanBody(msg, limit)
		if int64(len(scan.text)) > limit+maxScanParts {
			t.Fatalf("read %d bytes of text past a %d-byte limit", len(scan.text), limit)
		}
		// What could not be read is said, briefly, and a plain message
		// whose body carries the marker is read whole.
		if len(scan.incomplete) > maxScanProblems*210+32 {
			t.Fatalf("reason runs to %d bytes", len(scan.incomplete))
		}
		if plain := append([]byte("From: a@org.test\r\n\r\n"), msg...); len(msg) < limit {
			if scan := scanBody(plain, limit); scan.incomplete != "" || !strings.Contains(scan.text, string(msg)) {
				t.Fatalf("a plain body was not read whole: %q", scan.incomplete)
			}
		}
	})
}
