package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/gateway/admin"
	"github.com/sealgate/sealgate/policy"
)

// What `policy explain` adds to the policy's decision when it can read
// the key store: per recipient, what each method of its chain would make
// of it, and the method it will get. policy.Explain stays pure; the
// lookup is here, through the same KeyOps the keys commands use (the
// spool file when the server is stopped, its admin API when it runs).
// The key store is read as it is now: nothing is discovered, and a key
// is judged by what the listing says (expiry, source); the delivery
// checks it again (revocation) at the moment of use.

// Whether a method applies to a recipient.
const (
	appliesYes   = "yes"
	appliesNo    = "no"
	appliesMaybe = "maybe" // it depends on what discovery finds at delivery
)

// methodOutlook is what one method of a chain makes of one recipient.
type methodOutlook struct {
	Method  policy.Method `json:"method"`
	Applies string        `json:"applies"` // appliesYes, appliesNo, appliesMaybe
	Why     string        `json:"why"`     // the line explain prints
}

// explainRecipient is a recipient's decision with its outlook; Methods
// is empty when the key store could not be read.
type explainRecipient struct {
	policy.RecipientDecision
	Methods []methodOutlook `json:"methods,omitempty"`
	// WillGet is the first method of the chain that applies, with the
	// ones before it that only may ("pgp if discovery finds a key, else
	// smime").
	WillGet string `json:"will_get,omitempty"`
}

// explainResult is policy.Applied with the outlook per recipient.
type explainResult struct {
	policy.Applied
	Recipients []explainRecipient `json:"recipients"`
	// KeyStore says where the keys were read, or why they were not;
	// KeysRead is false in the second case.
	KeyStore string `json:"key_store"`
	KeysRead bool   `json:"keys_read"`
	// Warnings name the recipients whose chain can only hold the
	// message: no method of it is provided by this node (or, with the
	// key store read, none applies now).
	Warnings []string `json:"warnings,omitempty"`
}

// explainWithKeys reads the key store of cfg's data dir, if it can, and
// adds each recipient's outlook to res.
func explainWithKeys(cfg *config.Config, res policy.Applied, now time.Time) explainResult {
	out := explainResult{Applied: res}
	ops, where, closeOps, err := admin.OpenKeyOps(cfg)
	if err != nil {
		out.KeyStore = "not read: " + err.Error()
		for _, rd := range res.Recipients {
			out.Recipients = append(out.Recipients, explainRecipient{RecipientDecision: rd})
		}
		holdWarnings(cfg, &out)
		return out
	}
	defer closeOps()
	out.KeyStore, out.KeysRead = where, true
	outlook := keyOutlook{cfg: cfg, ops: ops, now: now}
	for _, rd := range res.Recipients {
		out.Recipients = append(out.Recipients, explainRecipient{RecipientDecision: rd, Methods: outlook.chain(rd.Recipient, rd.Chain)})
	}
	groupOutlook(out.Recipients)
	for i := range out.Recipients {
		out.Recipients[i].WillGet = willGet(out.Recipients[i].Methods)
	}
	holdWarnings(cfg, &out)
	return out
}

// holdWarnings names each recipient whose chain can only hold its
// message until it expires: every method of the chain is one this node
// does not provide, or (when the keys were read) none applies now.
func holdWarnings(cfg *config.Config, r *explainResult) {
	expiry := cfg.Queue.Expiry.D().String()
	for _, rd := range r.Recipients {
		var missing []string
		for _, m := range rd.Chain {
			if why := notProvided(cfg, m); why != "" {
				missing = append(missing, why)
			} else {
				missing = nil
				break
			}
		}
		switch {
		case len(missing) > 0:
			r.Warnings = append(r.Warnings, fmt.Sprintf("%s: chain %s can only hold the message: %s; it waits and bounces after queue.expiry (%s). Provide a method or change the chain, then \"sealgate queue reapply --all\" for mail already queued",
				rd.Recipient, rd.Chain, strings.Join(missing, ", "), expiry))
		case strings.HasPrefix(rd.WillGet, "none: held"):
			r.Warnings = append(r.Warnings, fmt.Sprintf("%s: no method of chain %s applies now (no key for it): the message is held until one does, and bounces after queue.expiry (%s)",
				rd.Recipient, rd.Chain, expiry))
		}
	}
}

// notProvided says why this node cannot deliver by method m, "" when it
// can (the transport methods, bounce and drop always can).
func notProvided(cfg *config.Config, m policy.Method) string {
	switch {
	case m == policy.MethodPGP && !cfg.Keys.PGP:
		return "pgp not provided (keys.pgp is off)"
	case m == policy.MethodSMIME && !cfg.Keys.SMIME:
		return "smime not provided (keys.smime is off)"
	case m == policy.MethodEscrow && !cfg.EscrowOn():
		return "escrow not provided (needs escrow.enabled and portal.public_url)"
	}
	return ""
}

// keyOutlook judges each method of a chain for a recipient from the key
// store's listing and the config.
type keyOutlook struct {
	cfg *config.Config
	ops admin.KeyOps
	now time.Time
}

func (o keyOutlook) chain(rcpt string, chain policy.Chain) []methodOutlook {
	keys, lookupErr := o.ops.KeysFor(rcpt)
	var out []methodOutlook
	for _, m := range chain {
		mo := methodOutlook{Method: m, Applies: appliesYes, Why: string(m)}
		switch {
		case (m == policy.MethodPGP || m == policy.MethodSMIME) && lookupErr != nil:
			mo.Applies, mo.Why = appliesNo, fmt.Sprintf("%s: the key store could not be read for %s: %v", m, rcpt, lookupErr)
		case m == policy.MethodPGP:
			mo = o.pgp(keys)
		case m == policy.MethodSMIME:
			mo = o.smime(keys)
		case m == policy.MethodEscrow:
			if why := notProvided(o.cfg, m); why != "" {
				mo.Applies, mo.Why = appliesNo, why
			} else {
				mo.Why = "escrow (notice with a portal link)"
			}
		}
		out = append(out, mo)
	}
	return out
}

func (o keyOutlook) pgp(keys []certs.Key) methodOutlook {
	mo := methodOutlook{Method: policy.MethodPGP, Applies: appliesNo}
	if why := notProvided(o.cfg, policy.MethodPGP); why != "" {
		mo.Why = why
		return mo
	}
	d := o.cfg.Keys.Discovery
	var sources []string
	if d.WKD {
		sources = append(sources, "WKD")
	}
	if d.OPENPGPKEY && o.cfg.Outbound.DNSSECTrustedResolver {
		sources = append(sources, "OPENPGPKEY")
	}
	uses := map[string]bool{certs.SourceWKD: d.WKD, certs.SourceOPENPGPKEY: d.OPENPGPKEY}
	return o.pick(mo, keys, certs.KindOpenPGP, uses, sources, "no OpenPGP key in the store")
}

func (o keyOutlook) smime(keys []certs.Key) methodOutlook {
	mo := methodOutlook{Method: policy.MethodSMIME, Applies: appliesNo}
	if why := notProvided(o.cfg, policy.MethodSMIME); why != "" {
		mo.Why = why
		return mo
	}
	var sources []string
	if o.cfg.Keys.Discovery.SMIMEA && o.cfg.Outbound.DNSSECTrustedResolver {
		sources = append(sources, "SMIMEA")
	}
	uses := map[string]bool{certs.SourceSMIMEA: o.cfg.Keys.Discovery.SMIMEA}
	return o.pick(mo, keys, certs.KindSMIME, uses, sources, "no S/MIME certificate")
}

// pick follows the keyring's rule (certs/discover.go): imported keys
// if the address has any — even unusable ones, then nothing else is
// tried — else discovered ones not yet due for a new lookup whose
// source is on, else discovery at delivery when a source is on.
func (o keyOutlook) pick(mo methodOutlook, keys []certs.Key, kind string, uses map[string]bool, sources []string, none string) methodOutlook {
	var imported, discovered []certs.Key
	for _, k := range keys {
		switch {
		case k.Kind != kind:
		case k.Source == certs.SourceImport || k.Source == "":
			imported = append(imported, k)
		case o.now.Before(k.Until) && uses[k.Source]:
			discovered = append(discovered, k)
		}
	}
	cands := imported
	if len(cands) == 0 {
		cands = discovered
	}
	var why []string
	for _, k := range cands {
		if reason := o.unusable(k); reason != "" {
			why = append(why, reason)
			continue
		}
		mo.Applies, mo.Why = appliesYes, string(mo.Method)+": "+describeKey(k)
		return mo
	}
	mo.Why = string(mo.Method) + " skipped: " + none
	if len(why) > 0 {
		mo.Why = string(mo.Method) + " skipped: " + strings.Join(why, "; ")
	}
	switch {
	case len(imported) > 0:
		mo.Why += " (an address with an imported key is not looked up elsewhere)"
	case len(sources) > 0:
		mo.Applies = appliesMaybe
		mo.Why += "; discovery (" + strings.Join(sources, ", ") + ") would be tried at delivery"
	}
	return mo
}

// unusable says why k cannot be used now, from what the listing shows.
func (o keyOutlook) unusable(k certs.Key) string {
	name := "key " + k.Fingerprint
	if k.Kind == certs.KindSMIME {
		name = "certificate " + k.Fingerprint
		if o.now.Before(k.Created) {
			return name + " not valid before " + k.Created.UTC().Format(time.DateOnly)
		}
	}
	if !k.Expires.IsZero() && !o.now.Before(k.Expires) {
		return name + " expired on " + k.Expires.UTC().Format(time.DateOnly)
	}
	return ""
}

func describeKey(k certs.Key) string {
	source := k.Source
	if source == certs.SourceImport || source == "" {
		source = "imported"
	}
	if k.Kind == certs.KindSMIME {
		return fmt.Sprintf("certificate serial %s fingerprint %s (%s, %s)", k.Serial, k.Fingerprint, k.Algorithm, source)
	}
	return fmt.Sprintf("key %s (%s, %s)", k.Fingerprint, k.Algorithm, source)
}

// groupOutlook applies the group rule of pgp and smime: a group (the
// recipients of one domain at the same method) gets the method only
// when every member has a key; otherwise all of them move on.
func groupOutlook(rcpts []explainRecipient) {
	type groupKey struct {
		domain, chain string
		method        policy.Method
	}
	worst := map[groupKey]methodOutlook{}
	key := func(r explainRecipient, m policy.Method) groupKey {
		_, domain, _ := strings.Cut(strings.ToLower(r.Recipient), "@")
		return groupKey{domain, r.Chain.String(), m}
	}
	rank := map[string]int{appliesYes: 0, appliesMaybe: 1, appliesNo: 2}
	for _, r := range rcpts {
		for _, mo := range r.Methods {
			k := key(r, mo.Method)
			if w, ok := worst[k]; !ok || rank[mo.Applies] > rank[w.Applies] {
				mo.Why = r.Recipient + ": " + mo.Why
				worst[k] = mo
			}
		}
	}
	for _, r := range rcpts {
		for i, mo := range r.Methods {
			if mo.Method != policy.MethodPGP && mo.Method != policy.MethodSMIME {
				continue
			}
			if w := worst[key(r, mo.Method)]; rank[w.Applies] > rank[mo.Applies] {
				r.Methods[i].Applies = w.Applies
				r.Methods[i].Why = mo.Why + ", but the group moves on together (" + w.Why + ")"
			}
		}
	}
}

// willGet names the method a recipient will get: the first that
// applies, after those that only may.
func willGet(methods []methodOutlook) string {
	var maybe []string
	for _, mo := range methods {
		switch {
		case mo.Applies == appliesMaybe:
			maybe = append(maybe, string(mo.Method)+" if discovery finds a key")
		case mo.Applies == appliesYes:
			return strings.Join(append(maybe, string(mo.Method)), ", else ")
		}
	}
	if len(maybe) > 0 {
		return strings.Join(maybe, ", else ") + ", else held"
	}
	return "none: held (no method of the chain applies now), bounced at expiry"
}
