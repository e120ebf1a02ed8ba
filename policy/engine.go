package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/internal/mailtext"
)

// Engine decides, per recipient, the chain of methods a message gets. It
// is built once from the config (Compile) and is safe for concurrent use;
// it does no I/O. The live gateway and "sealgate policy explain" call the
// same Decide.
type Engine struct {
	floor      Method
	escalation Chain
	tags       map[string]Chain // lower-case tag → chain
	tagOrder   []string
	fwdTLSOnly bool
	fwdChain   Chain
	rules      []rule
	hash       string
	// scanBytes bounds content matching; needsBody says whether any rule
	// looks at the body at all (then the gateway scans it).
	scanBytes int64
	needsBody bool
	// onScanError is the chain for recipients whose decision the unread
	// part of a body could have changed; nil means such content and
	// attachment conditions count as matching.
	onScanError Chain
}

type rule struct {
	name          string
	from, to      []string
	authUsers     []string
	nets          []netip.Prefix
	subject       *regexp.Regexp
	headers       map[string]*regexp.Regexp
	tagged        string
	forwarded     string
	minSize       int64
	maxSize       int64
	content       *regexp.Regexp
	attachments   string
	chain         Chain
	reject        string
	hold          bool
	receipt       bool
	addHeaders    map[string]string
	removeHeaders []string
	cont          bool
}

// Compile builds an engine from the policy section. The config has been
// validated; errors here name the rule.
func Compile(p config.Policy) (*Engine, error) {
	e := &Engine{floor: Method(p.Minimum), tags: map[string]Chain{}, scanBytes: p.ContentScanBytes}
	var err error
	if e.escalation, err = ParseChain(p.EscalationChain); err != nil {
		return nil, fmt.Errorf("policy.escalation_chain: %w", err)
	}
	for tag, what := range p.Tags {
		c := e.escalation
		if what != "escalate" {
			if c, err = ParseChain([]string{what}); err != nil {
				return nil, fmt.Errorf("policy.tags.%s: %w", tag, err)
			}
		}
		e.tags[strings.ToLower(tag)] = c
		e.tagOrder = append(e.tagOrder, strings.ToLower(tag))
	}
	sort.Strings(e.tagOrder)
	if len(p.OnScanError) > 0 {
		if e.onScanError, err = ParseChain(p.OnScanError); err != nil {
			return nil, fmt.Errorf("policy.on_scan_error: %w", err)
		}
	}
	if p.Forwarding == "tls-only" {
		e.fwdTLSOnly = true
		e.fwdChain = Chain{Method(p.ForwardingMethod), Method(p.ForwardingFallback)}
	}
	for i, r := range p.Rules {
		cr := rule{name: r.Name, from: lower(r.Match.From), to: lower(append(append([]string{}, r.Match.To...), r.Match.ToFileEntries...)), authUsers: r.Match.AuthUser, attachments: r.Match.HasAttachments,
			tagged: r.Match.Tagged, forwarded: r.Match.Forwarded, minSize: r.Match.MinSize, maxSize: r.Match.MaxSize,
			reject: r.Reject, hold: r.Hold, receipt: r.Receipt, addHeaders: r.AddHeaders, removeHeaders: r.RemoveHeaders, cont: r.Continue}
		where := fmt.Sprintf("policy.rules[%d] (%s)", i, r.Name)
		for _, n := range r.Match.ClientNetwork {
			pfx, err := netip.ParsePrefix(n)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
			cr.nets = append(cr.nets, pfx.Masked())
		}
		if r.Match.Content != "" {
			if cr.content, err = regexp.Compile(r.Match.Content); err != nil {
				return nil, fmt.Errorf("%s: content: %w", where, err)
			}
		}
		e.needsBody = e.needsBody || cr.content != nil || cr.attachments != ""
		if r.Match.Subject != "" {
			if cr.subject, err = regexp.Compile(r.Match.Subject); err != nil {
				return nil, fmt.Errorf("%s: subject: %w", where, err)
			}
		}
		for name, re := range r.Match.Header {
			if cr.headers == nil {
				cr.headers = map[string]*regexp.Regexp{}
			}
			if cr.headers[strings.ToLower(name)], err = regexp.Compile(re); err != nil {
				return nil, fmt.Errorf("%s: header %s: %w", where, name, err)
			}
		}
		if len(r.Chain) > 0 {
			if cr.chain, err = ParseChain(r.Chain); err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
		}
		e.rules = append(e.rules, cr)
	}
	sum, _ := json.Marshal(p)
	h := sha256.Sum256(sum)
	e.hash = hex.EncodeToString(h[:8])
	return e, nil
}

// NeedsBody reports whether any rule matches on content or attachments,
// and how many bytes of text to scan at most.
func (e *Engine) NeedsBody() (bool, int64) { return e.needsBody, e.scanBytes }

// Hash identifies the rule set, for the log line of a reload.
func (e *Engine) Hash() string { return e.hash }

// Tags lists the configured Subject tags.
func (e *Engine) Tags() []string { return e.tagOrder }

// lower puts address globs in the form intake gives addresses: lower
// case, and a literal domain part (no glob characters) in its canonical
// form (no trailing dot, A-labels), so that "*@Bücher.example." matches
// what arrives as "x@xn--bcher-kva.example".
func lower(s []string) []string {
	out := make([]string, len(s))
	for i, x := range s {
		x = strings.ToLower(x)
		local, domain, hasAt := "", x, false
		if at := strings.LastIndexByte(x, '@'); at >= 0 {
			local, domain, hasAt = x[:at+1], x[at+1:], true
		}
		if !strings.ContainsAny(domain, "*?[\\") {
			if d, err := mailtext.CanonicalDomain(domain); err == nil {
				domain = d
			}
		}
		if hasAt {
			x = local + domain
		} else {
			x = domain
		}
		out[i] = x
	}
	return out
}

// Input is what a decision looks at. The gateway fills it from the
// session and the message header; explain fills it from the command line
// or an .eml file, through the same code.
type Input struct {
	From       string
	Recipients []string
	AuthUser   string
	ClientIP   netip.Addr
	Subject    string              // decoded, after tag removal
	Header     map[string][]string // canonical names, decoded values
	Size       int64
	Tags       []string // Subject tags found (as configured)
	// SubjectScanError says why the Subject could not be searched for
	// tags ("" when it was): the message then counts as carrying the
	// strongest tag.
	SubjectScanError string
	// HeaderEscalation is X-Sealgate-Escalate ("encrypt" or "escrow")
	// from a trusted or authenticated client; "" otherwise.
	HeaderEscalation string
	Forwarded        bool
	ForwardedBy      string // the marker that showed it
	// Text is the decoded text parts, at most the scan limit (only
	// filled when NeedsBody); HasAttachments says whether the message
	// carries any.
	Text           string
	HasAttachments bool
	// BodyScanError says why the body could not be read whole ("" when
	// it was, or was not needed): the Text and HasAttachments above are
	// then only what was read, and content and attachment conditions
	// that depend on the rest fail closed (see Decide).
	BodyScanError string
}

// RecipientDecision is the outcome for one recipient.
type RecipientDecision struct {
	Recipient string   `json:"recipient"`
	Chain     Chain    `json:"chain"`
	Rules     []string `json:"rules"`   // rules that matched, in order
	Reasons   []string `json:"reasons"` // how the chain came about, in words
	// By is what chose the chain, in words: "default", "rule partners",
	// "tag [secure]" (the tag as found), "X-Sealgate-Escalate: encrypt",
	// "policy.minimum tls-verified"… A rule may match and a tag still
	// choose the chain: Rules lists the one, By names the other.
	By string `json:"by"`
}

// Decision is the outcome for a message.
type Decision struct {
	Recipients []RecipientDecision `json:"recipients"`
	Reject     string              `json:"reject,omitempty"`
	RejectRule string              `json:"reject_rule,omitempty"`
	Hold       string              `json:"hold,omitempty"` // the rules that hold it, "" when none
	// Receipt names the rule that asks for a security receipt to the
	// sender, "" when none does.
	Receipt       string            `json:"receipt,omitempty"`
	AddHeaders    map[string]string `json:"add_headers,omitempty"`
	RemoveHeaders []string          `json:"remove_headers,omitempty"`
	Tags          []string          `json:"tags,omitempty"`
	Forwarding    string            `json:"forwarding"`
	// ScanErrors says what could not be read (the Subject for tags, the
	// body for content and attachment rules) and how the decision made
	// up for it; empty when everything was read.
	ScanErrors []string `json:"scan_errors,omitempty"`
}

// Decide runs the rules for every recipient.
func (e *Engine) Decide(in Input) Decision {
	d := Decision{Tags: in.Tags, Forwarding: "not auto-forwarded"}
	if in.Forwarded {
		d.Forwarding = "auto-forwarded (" + in.ForwardedBy + ")"
		if e.fwdTLSOnly {
			d.Forwarding += ": TLS only, " + e.fwdChain.String()
		}
	}
	if in.SubjectScanError != "" {
		d.ScanErrors = append(d.ScanErrors, in.SubjectScanError+": treated as tagged")
	}
	if in.BodyScanError != "" {
		how := "content and attachment rules that the unread part could satisfy are assumed to match"
		if e.onScanError != nil {
			how = "on_scan_error " + e.onScanError.String() + " for the recipients whose decision the unread part could change"
		}
		d.ScanErrors = append(d.ScanErrors, "body not read whole ("+in.BodyScanError+"): "+how)
	}
	var holds []string
	for _, rcpt := range in.Recipients {
		rd := RecipientDecision{Recipient: rcpt, Chain: Chain{MethodTLS}, Reasons: []string{"default [tls]"}, By: "default"}
		unreadMattered := e.runRules(&d, &rd, &holds, in)
		if unreadMattered && e.onScanError != nil {
			why := "body not read whole (" + in.BodyScanError + "): on_scan_error " + e.onScanError.String()
			if e.onScanError.strength() < rd.Chain.strength() {
				rd.Reasons = append(rd.Reasons, why+" ignored: weaker than "+rd.Chain.String())
			} else {
				rd.Chain, rd.By = e.onScanError, "on_scan_error"
				rd.Reasons = append(rd.Reasons, why)
			}
		}
		switch {
		case in.Forwarded && e.fwdTLSOnly:
			// Forwarded mail is never escalated: it leaves by TLS or not at all.
			rd.Chain, rd.By = e.fwdChain, "forwarding tls-only (auto-forwarded)"
			rd.Reasons = append(rd.Reasons, "auto-forwarded, forwarding tls-only: "+e.fwdChain.String())
		default:
			e.escalate(&rd, in)
		}
		if floored := rd.Chain.applyFloor(e.floor); floored.String() != rd.Chain.String() {
			rd.Chain, rd.By = floored, "policy.minimum "+string(e.floor)
			rd.Reasons = append(rd.Reasons, "policy.minimum "+string(e.floor)+": "+floored.String())
		}
		d.Recipients = append(d.Recipients, rd)
	}
	d.Hold = strings.Join(holds, ", ")
	return d
}

// runRules runs the rules for one recipient, in order, and reports
// whether a rule's verdict depended on a body that could not be read
// whole. Without on_scan_error such a rule is assumed to match (fail
// closed): its reject, hold and header actions apply, and its chain too
// unless weaker than the chain so far. An assumed match never ends the
// walk, and no later rule may lower the chain it set, so assuming a
// permissive rule matched can neither weaken a recipient nor hide a
// stricter rule behind it.
func (e *Engine) runRules(d *Decision, rd *RecipientDecision, holds *[]string, in Input) (unreadMattered bool) {
	var pinned Chain // the chain of the last assumed match
	for _, r := range e.rules {
		v := r.matches(in, rd.Recipient)
		if v == noMatch {
			continue
		}
		assumed := v == matchIfUnread
		if assumed {
			unreadMattered = true
			if e.onScanError != nil {
				continue // decided by on_scan_error instead
			}
		}
		rd.Rules = append(rd.Rules, r.name)
		if r.reject != "" && d.Reject == "" {
			d.Reject, d.RejectRule = r.reject, r.name
		}
		if r.hold && !containsString(*holds, r.name) {
			*holds = append(*holds, r.name)
		}
		if r.receipt && d.Receipt == "" {
			d.Receipt = r.name
		}
		for k, v := range r.addHeaders {
			if d.AddHeaders == nil {
				d.AddHeaders = map[string]string{}
			}
			d.AddHeaders[k] = v
		}
		d.RemoveHeaders = append(d.RemoveHeaders, r.removeHeaders...)
		what := "rule " + r.name
		if assumed {
			what += " (assumed to match: body not read whole)"
		}
		switch {
		case r.chain == nil:
			if assumed {
				rd.Reasons = append(rd.Reasons, what)
			}
		case assumed && r.chain.strength() < rd.Chain.strength():
			rd.Reasons = append(rd.Reasons, what+": "+r.chain.String()+" ignored: weaker than "+rd.Chain.String())
		case assumed:
			rd.Chain, pinned, rd.By = r.chain, r.chain, what
			rd.Reasons = append(rd.Reasons, what+": "+r.chain.String())
		case pinned != nil && r.chain.strength() < pinned.strength():
			rd.Reasons = append(rd.Reasons, what+": "+r.chain.String()+" ignored: weaker than "+pinned.String()+" of a rule assumed to match")
		default:
			rd.Chain, rd.By = r.chain, what
			rd.Reasons = append(rd.Reasons, what+": "+r.chain.String())
		}
		if !r.cont && !assumed {
			break
		}
	}
	return unreadMattered
}

// escalate applies Subject tags and the escalation header: the strongest
// asked for wins, and only if it is at least as strong as the rules'.
func (e *Engine) escalate(rd *RecipientDecision, in Input) {
	var best Chain
	why, by := "", ""
	if in.SubjectScanError != "" {
		// Fail closed: as if the strongest configured tag were there.
		for _, tag := range e.tagOrder {
			if c := e.tags[tag]; c.strength() > best.strength() {
				best, why, by = c, "Subject not searched for tags, treated as tagged "+tag, "tag "+tag+" (Subject not searched)"
			}
		}
	}
	for _, tag := range in.Tags {
		if c, ok := e.tags[strings.ToLower(tag)]; ok && c.strength() > best.strength() {
			best, why = c, "tag "+tag
			by = why
		}
	}
	if h := in.HeaderEscalation; h != "" {
		c := e.escalation
		if h == "escrow" {
			c = Chain{MethodEscrow}
		}
		if c.strength() > best.strength() {
			best, why = c, "X-Sealgate-Escalate: "+h
			by = why
		}
	}
	if best == nil {
		return
	}
	if best.strength() < rd.Chain.strength() {
		rd.Reasons = append(rd.Reasons, why+" ignored: weaker than "+rd.Chain.String())
		return
	}
	rd.Chain, rd.By = best, by
	rd.Reasons = append(rd.Reasons, why+": "+best.String())
}

// verdict is a rule's answer for one recipient.
type verdict int

const (
	noMatch verdict = iota
	match
	// matchIfUnread: every condition holds except a content or
	// attachment condition that only the unread part of the body could
	// satisfy.
	matchIfUnread
)

func (r *rule) matches(in Input, rcpt string) verdict {
	if !r.matchesHeaderFacts(in, rcpt) {
		return noMatch
	}
	v := match
	unread := in.BodyScanError != ""
	switch r.attachments { // an attachment may hide in what was not read
	case "yes":
		if !in.HasAttachments {
			if !unread {
				return noMatch
			}
			v = matchIfUnread
		}
	case "no":
		if in.HasAttachments {
			return noMatch
		}
		if unread {
			v = matchIfUnread
		}
	}
	if r.content != nil && !r.content.MatchString(in.Text) {
		if !unread {
			return noMatch
		}
		v = matchIfUnread
	}
	return v
}

// matchesHeaderFacts checks the conditions on what is always known
// whole: the envelope, the session, the header and the size.
func (r *rule) matchesHeaderFacts(in Input, rcpt string) bool {
	if len(r.from) > 0 && !matchAddress(r.from, in.From) {
		return false
	}
	if len(r.to) > 0 && !matchAddress(r.to, rcpt) {
		return false
	}
	if len(r.authUsers) > 0 && !containsString(r.authUsers, in.AuthUser) {
		return false
	}
	if len(r.nets) > 0 {
		ok := false
		for _, n := range r.nets {
			ok = ok || (in.ClientIP.IsValid() && n.Contains(in.ClientIP.Unmap()))
		}
		if !ok {
			return false
		}
	}
	if r.subject != nil && !r.subject.MatchString(in.Subject) {
		return false
	}
	for name, re := range r.headers {
		found := false
		for k, vs := range in.Header {
			if strings.ToLower(k) != name {
				continue
			}
			for _, v := range vs {
				found = found || re.MatchString(v)
			}
		}
		if !found {
			return false
		}
	}
	tagged := len(in.Tags) > 0 || in.HeaderEscalation != "" || in.SubjectScanError != ""
	switch {
	case r.tagged == "yes" && !tagged, r.tagged == "no" && tagged:
		return false
	case r.forwarded == "yes" && !in.Forwarded, r.forwarded == "no" && in.Forwarded:
		return false
	case r.minSize > 0 && in.Size < r.minSize, r.maxSize > 0 && in.Size > r.maxSize:
		return false
	}
	return true
}

// matchAddress matches an address against globs; a glob without "@"
// matches the domain part.
func matchAddress(globs []string, addr string) bool {
	addr = strings.ToLower(addr)
	domain := addr
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		domain = addr[at+1:]
	}
	for _, g := range globs {
		subject := domain
		if strings.Contains(g, "@") {
			subject = addr
		}
		if ok, _ := path.Match(g, subject); ok {
			return true
		}
	}
	return false
}
