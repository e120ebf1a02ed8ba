package config

import (
	"fmt"
	"net/netip"
	"os"
	"path"
	"regexp"
	"strings"
)

var (
	deliveringMethods = []string{"tls", "tls-verified", "pgp", "smime", "escrow"}
	allMethods        = append(append([]string{}, deliveringMethods...), "drop", "bounce")
)

func (v *validator) validatePolicy(p *Policy) {
	v.oneOf("policy.minimum", p.Minimum, deliveringMethods...)
	v.chain("policy.escalation_chain", p.EscalationChain)
	for tag, what := range p.Tags {
		if strings.TrimSpace(tag) == "" {
			v.fail("policy.tags", "empty tag")
		}
		v.oneOf("policy.tags."+tag, what, append([]string{"escalate"}, deliveringMethods...)...)
	}
	v.oneOf("policy.forwarding", p.Forwarding, "allow", "tls-only")
	v.oneOf("policy.forwarding_method", p.ForwardingMethod, "tls-verified", "tls")
	v.oneOf("policy.forwarding_fallback", p.ForwardingFallback, "drop", "bounce")
	v.positive("policy.content_scan_bytes", p.ContentScanBytes)
	if len(p.OnScanError) > 0 {
		v.chain("policy.on_scan_error", p.OnScanError)
	}
	names := map[string]bool{}
	for i, r := range p.Rules {
		base := fmt.Sprintf("policy.rules[%d]", i)
		mark := len(v.errs)
		switch {
		case r.Name == "":
			v.fail(base+".name", "every rule needs a name (it is what policy explain and the audit trail show)")
		case names[r.Name]:
			v.fail(base+".name", "duplicate rule name %q", r.Name)
		}
		names[r.Name] = true
		if len(r.Chain) == 0 && r.Reject == "" && !r.Hold && !r.Receipt && len(r.AddHeaders) == 0 && len(r.RemoveHeaders) == 0 {
			v.fail(base, "rule %q does nothing: give chain, reject, hold, receipt, add_headers or remove_headers", r.Name)
		}
		if len(r.Chain) > 0 {
			v.chain(base+".chain", r.Chain)
		}
		m := r.Match
		for j, g := range m.From {
			v.glob(fmt.Sprintf("%s.match.from[%d]", base, j), g)
		}
		for j, g := range m.To {
			v.glob(fmt.Sprintf("%s.match.to[%d]", base, j), g)
		}
		for j, c := range m.ClientNetwork {
			if _, err := netip.ParsePrefix(c); err != nil {
				v.fail(fmt.Sprintf("%s.match.client_network[%d]", base, j), "invalid CIDR %q", c)
			}
		}
		v.regex(base+".match.subject", m.Subject)
		v.regex(base+".match.content", m.Content)
		if m.HasAttachments != "" {
			v.oneOf(base+".match.has_attachments", m.HasAttachments, "yes", "no")
		}
		if m.ToFile != "" {
			entries, err := readPatternFile(m.ToFile)
			if err != nil {
				v.fail(base+".match.to_file", "%v", err)
			}
			for _, e := range entries {
				if _, err := path.Match(e.pattern, ""); err != nil {
					v.fail(base+".match.to_file", "%s:%d: bad pattern %q", m.ToFile, e.line, e.pattern)
				}
				p.Rules[i].Match.ToFileEntries = append(p.Rules[i].Match.ToFileEntries, e.pattern)
			}
		}
		for name, re := range m.Header {
			v.regex(base+".match.header."+name, re)
		}
		if m.Tagged != "" {
			v.oneOf(base+".match.tagged", m.Tagged, "yes", "no")
		}
		if m.Forwarded != "" {
			v.oneOf(base+".match.forwarded", m.Forwarded, "yes", "no")
		}
		if m.MaxSize != 0 && m.MaxSize < m.MinSize {
			v.fail(base+".match.max_size", "is below min_size")
		}
		if r.Name != "" {
			for _, e := range v.errs[mark:] {
				e.Msg = fmt.Sprintf("rule %q: %s", r.Name, e.Msg)
			}
		}
	}
}

func (v *validator) chain(p string, names []string) {
	if len(names) == 0 {
		v.fail(p, "empty chain")
		return
	}
	for i, n := range names {
		terminal := n == "drop" || n == "bounce"
		switch {
		case !contains(allMethods, n):
			v.fail(fmt.Sprintf("%s[%d]", p, i), "unknown method %q (%s)", n, strings.Join(allMethods, ", "))
		case terminal && i != len(names)-1:
			v.fail(fmt.Sprintf("%s[%d]", p, i), "%s must be the last method of a chain", n)
		}
	}
}

func (v *validator) glob(p, g string) {
	if _, err := path.Match(strings.ToLower(g), ""); err != nil || g == "" {
		v.fail(p, "bad pattern %q", g)
	}
}

func (v *validator) regex(p, re string) {
	if re == "" {
		return
	}
	if _, err := regexp.Compile(re); err != nil {
		v.fail(p, "bad regular expression: %v", err)
	}
}

type patternLine struct {
	pattern string
	line    int
}

// readPatternFile reads one address or domain pattern per line.
func readPatternFile(file string) ([]patternLine, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %v", file, unwrapPathError(err))
	}
	var out []patternLine
	for n, line := range strings.Split(string(data), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		if line = strings.ToLower(strings.TrimSpace(line)); line != "" {
			out = append(out, patternLine{line, n + 1})
		}
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
