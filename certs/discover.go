package certs

import (
	"context"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// Key discovery, the key store's side: when the store has no key for a
// recipient, the keyring asks an OpenPGPDiscoverer (certs/discovery
// looks in the recipient domain's Web Key Directory and DNSSEC-signed
// OPENPGPKEY records), keeps what it finds in the store with the source
// and a time to look again (Key.Until), and remembers a lookup that
// found nothing for a short while, so that a burst of mail to one
// partner asks the partner once. An imported key always wins: an
// address with an imported key — even an expired one — is never looked
// up, and a discovered key is never stored over an imported one.

// Discovered is what an OpenPGPDiscoverer found for one address.
type Discovered struct {
	// Keys are the entries usable for the address (DiscoveredOpenPGP),
	// Source set; none when nothing was found.
	Keys []Key
	// TTL is how long the answer may be kept when its source says so (a
	// DNS record's TTL); zero leaves it to the keyring.
	TTL time.Duration
	// Tried says what each source answered, in words for the admin
	// ("WKD 404", "no OPENPGPKEY record"), in the order they were asked.
	Tried []string
}

// OpenPGPDiscoverer looks for an address's OpenPGP keys outside the key
// store. The keyring calls DiscoverOpenPGP with the recipient address
// as the message has it (local part case preserved), at most once at a
// time per address, and only when the store cannot serve it; every
// failure is reported in Discovered.Tried, never as an error. Uses says
// whether entries found by source may still be used (the source is
// switched on in the config): turning a source off stops its cached
// keys from being used at once.
type OpenPGPDiscoverer interface {
	DiscoverOpenPGP(ctx context.Context, address string) Discovered
	Uses(source string) bool
}

// DiscoveryOptions bound what the keyring keeps from discovery.
type DiscoveryOptions struct {
	// TTL is how long a discovered key is used before it is looked up
	// again (keys.discovery.ttl); 0 means 24 hours.
	TTL time.Duration
	// NegativeTTL is how long a lookup that found nothing is remembered
	// (keys.discovery.negative_ttl); 0 means 10 minutes.
	NegativeTTL time.Duration
	// MaxEntries bounds the discovered entries kept in the store and the
	// failed lookups kept in memory, each; 0 means 10,000.
	MaxEntries int
	// SMIME, when not nil, is asked for S/MIME certificates
	// (FindSMIMERecipient) as the OpenPGPDiscoverer is for keys.
	SMIME SMIMEDiscoverer
	// SMIMERoots is the S/MIME trust store (keys.smime_roots) that a
	// discovered certificate of trust TrustPKIXEE must chain to when it
	// is used; nil trusts none of them.
	SMIMERoots *x509.CertPool
}

// NewDiscoveringKeyring is NewKeyring that asks d when the store has no
// key for an address (FindOpenPGPRecipient), and o.SMIME when it has no
// certificate (FindSMIMERecipient); either may be nil.
func NewDiscoveringKeyring(store KeyStore, now func() time.Time, d OpenPGPDiscoverer, o DiscoveryOptions) *Keyring {
	r := NewKeyring(store, now)
	if o.TTL <= 0 {
		o.TTL = 24 * time.Hour
	}
	if o.NegativeTTL <= 0 {
		o.NegativeTTL = 10 * time.Minute
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = 10000
	}
	r.disc = &discovery{source: d, opts: o, negative: map[string]negativeEntry{}, stored: -1}
	return r
}

// EntryRemover is what the keyring needs from a store to drop single
// discovered entries (a stale key of one address, the oldest entries
// when there are too many) without touching the other addresses a
// fingerprint is stored for. SpoolKeyStore implements it; a store that
// does not keeps stale entries, which are ignored once past Until.
type EntryRemover interface {
	RemoveEntries(keys []Key) error
}

// RemoveEntries deletes the entries of exactly these addresses and
// fingerprints; entries that do not exist are no error.
func (s *SpoolKeyStore) RemoveEntries(keys []Key) error {
	ids := make([]string, 0, len(keys))
	for _, k := range keys {
		addr, err := KeyAddress(k.Address)
		if err != nil {
			return err
		}
		ids = append(ids, recordID(addr, NormalizeFingerprint(k.Fingerprint)))
	}
	return s.records.DeleteKeyRecords(ids)
}

type discovery struct {
	source OpenPGPDiscoverer
	opts   DiscoveryOptions
	flight singleflight.Group

	mu       sync.Mutex
	negative map[string]negativeEntry // by KeyAddress
	stored   int                      // discovered entries in the store; -1 until counted
}

// uses reports whether entries found by source may be used.
func (d *discovery) uses(source string) bool {
	if d.opts.SMIME != nil && d.opts.SMIME.Uses(source) {
		return true
	}
	return d.source != nil && d.source.Uses(source)
}

type negativeEntry struct {
	why   string
	until time.Time
}

func imported(k Key) bool { return k.Source == SourceImport || k.Source == "" }

// candidates are the stored entries of a kind the keyring may encrypt
// to: the
// imported ones if there are any (an imported key is never replaced by
// a discovered one), else the discovered ones not yet due for a new
// lookup whose source is still switched on.
func (r *Keyring) candidates(keys []Key, kind string, now time.Time) (out []Key, fromImport bool) {
	keys = slices.DeleteFunc(slices.Clone(keys), func(k Key) bool { return k.Kind != kind })
	for _, k := range keys {
		if imported(k) {
			out = append(out, k)
		}
	}
	if len(out) > 0 {
		return out, true
	}
	for _, k := range keys {
		if now.Before(k.Until) && r.disc != nil && r.disc.uses(k.Source) {
			out = append(out, k)
		}
	}
	return out, false
}

// FindOpenPGPRecipient is OpenPGPRecipient that, when the store cannot
// serve address and the keyring was made with a discoverer, looks the
// key up (ctx bounds the lookup) and keeps what it finds. An address
// with an imported key is never looked up. The error wraps
// ErrNoUsableKey and says what was tried: "no OpenPGP key for
// bob@example.org: WKD 404, no OPENPGPKEY record".
func (r *Keyring) FindOpenPGPRecipient(ctx context.Context, address string) (*OpenPGPRecipient, error) {
	addr, err := KeyAddress(address)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoUsableKey, err)
	}
	if r.disc == nil || r.disc.source == nil {
		return r.OpenPGPRecipient(addr)
	}
	keys, err := r.store.Lookup(addr)
	if err != nil {
		return nil, err
	}
	now := r.now()
	if cands, fromImport := r.candidates(keys, KindOpenPGP, now); len(cands) > 0 {
		rcpt, err := pickOpenPGP(cands, addr, now)
		if err != nil && fromImport {
			return nil, fmt.Errorf("%w; an address with an imported key is not looked up elsewhere", err)
		}
		if err == nil {
			return rcpt, nil
		}
		// A discovered key revoked or expired since: look again.
	}
	if why, ok := r.disc.failedRecently(negativeKey(KindOpenPGP, addr), now); ok {
		return nil, fmt.Errorf("%w: no OpenPGP key for %s: %s (looked up less than %s ago)", ErrNoUsableKey, addr, why, r.disc.opts.NegativeTTL)
	}
	found, _, _ := r.disc.flight.Do(addr, func() (any, error) {
		return r.discover(ctx, address, addr), nil
	})
	res := found.(discoverResult)
	return res.rcpt, res.err
}

type discoverResult struct {
	rcpt *OpenPGPRecipient
	err  error
}

// discover asks the discoverer and keeps its answer, found or not.
func (r *Keyring) discover(ctx context.Context, address, addr string) discoverResult {
	d := r.disc.source.DiscoverOpenPGP(ctx, address)
	importedMeanwhile, err := r.keepDiscovered(ctx, KindOpenPGP, addr, d)
	switch {
	case err != nil:
		return discoverResult{err: err}
	case importedMeanwhile:
		rcpt, err := r.OpenPGPRecipient(addr)
		return discoverResult{rcpt: rcpt, err: err}
	}
	rcpt, err := pickOpenPGP(d.Keys, addr, r.now())
	return discoverResult{rcpt: rcpt, err: err}
}

// keepDiscovered keeps what a discoverer found for addr: nothing found
// is remembered as a failure (an error wrapping ErrNoUsableKey saying
// what was tried); keys found replace the address's earlier discovered
// entries of their kind, with Added and Until set, unless a key of that
// kind was imported for the address while we were looking — then
// nothing is stored and importedMeanwhile says so.
func (r *Keyring) keepDiscovered(ctx context.Context, kind, addr string, d Discovered) (importedMeanwhile bool, err error) {
	now := r.now()
	if len(d.Keys) == 0 {
		why := strings.Join(d.Tried, ", ")
		if why == "" {
			why = "no discovery source is on"
		}
		if ctx.Err() == nil { // an interrupted lookup says nothing about the partner
			r.disc.rememberFailure(negativeKey(kind, addr), why, now)
		}
		return false, fmt.Errorf("%w: no %s for %s: %s", ErrNoUsableKey, kindNoun(kind), addr, why)
	}
	ttl := r.disc.opts.TTL
	if d.TTL > 0 && d.TTL < ttl {
		ttl = max(d.TTL, time.Minute)
	}
	stored, err := r.store.Lookup(addr)
	if err != nil {
		return false, err
	}
	var stale []Key
	for _, k := range stored {
		if k.Kind != kind {
			continue
		}
		if imported(k) {
			return true, nil // imported while we were looking: it wins
		}
		stale = append(stale, k)
	}
	if rm, ok := r.store.(EntryRemover); ok && len(stale) > 0 {
		if err := rm.RemoveEntries(stale); err != nil {
			return false, err
		}
		r.disc.counted(-len(stale))
	}
	for i := range d.Keys {
		d.Keys[i].Added, d.Keys[i].Until = now.UTC(), now.Add(ttl).UTC()
		if err := r.store.Put(d.Keys[i]); err != nil {
			return false, err
		}
	}
	r.disc.counted(len(d.Keys))
	r.boundDiscovered(now)
	r.disc.forget(negativeKey(kind, addr))
	return false, nil
}

// negativeKey names a failed lookup in the negative cache and in the
// single-flight group: OpenPGP and S/MIME lookups of one address are
// separate questions.
func negativeKey(kind, addr string) string {
	if kind == KindOpenPGP {
		return addr
	}
	return kind + ":" + addr
}

func kindNoun(kind string) string {
	if kind == KindSMIME {
		return "S/MIME certificate"
	}
	return "OpenPGP key"
}

// boundDiscovered keeps at most MaxEntries discovered entries in the
// store: when there are more (or they were never counted), it drops
// those past Until, then the oldest, down to nine tenths of the bound.
func (r *Keyring) boundDiscovered(now time.Time) {
	rm, ok := r.store.(EntryRemover)
	if !ok {
		return
	}
	r.disc.mu.Lock()
	stored := r.disc.stored
	r.disc.mu.Unlock()
	if stored >= 0 && stored <= r.disc.opts.MaxEntries {
		return
	}
	all, err := r.store.List()
	if err != nil {
		return
	}
	var keep, drop []Key
	for _, k := range all {
		switch {
		case imported(k):
		case !now.Before(k.Until):
			drop = append(drop, k)
		default:
			keep = append(keep, k)
		}
	}
	if limit := r.disc.opts.MaxEntries * 9 / 10; len(keep) > limit {
		slices.SortStableFunc(keep, func(a, b Key) int { return a.Added.Compare(b.Added) })
		drop = append(drop, keep[:len(keep)-limit]...)
		keep = keep[len(keep)-limit:]
	}
	if len(drop) > 0 && rm.RemoveEntries(drop) != nil {
		return
	}
	r.disc.mu.Lock()
	r.disc.stored = len(keep)
	r.disc.mu.Unlock()
}

func (d *discovery) counted(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stored >= 0 {
		d.stored = max(d.stored+n, 0)
	}
}

func (d *discovery) failedRecently(addr string, now time.Time) (string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.negative[addr]
	if !ok || !now.Before(e.until) {
		delete(d.negative, addr)
		return "", false
	}
	return e.why, true
}

func (d *discovery) rememberFailure(addr, why string, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.negative) >= d.opts.MaxEntries {
		for a, e := range d.negative {
			if !now.Before(e.until) {
				delete(d.negative, a)
			}
		}
		if len(d.negative) >= d.opts.MaxEntries {
			clear(d.negative) // a flood of distinct addresses: start over rather than grow
		}
	}
	d.negative[addr] = negativeEntry{why: why, until: now.Add(d.opts.NegativeTTL)}
}

func (d *discovery) forget(addr string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.negative, addr)
}
