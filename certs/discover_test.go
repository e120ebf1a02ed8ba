package certs_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/sealgate/sealgate/certs"
)

// fakeDirectory serves keys by address and counts the lookups.
type fakeDirectory struct {
	mu      sync.Mutex
	keys    map[string][]byte // armored key block by KeyAddress
	off     map[string]bool   // sources switched off
	lookups atomic.Int32
	ttl     time.Duration
	now     func() time.Time
	block   chan struct{} // when set, lookups wait for it
}

func (f *fakeDirectory) DiscoverOpenPGP(ctx context.Context, address string) certs.Discovered {
	f.lookups.Add(1)
	if f.block != nil {
		<-f.block
	}
	addr, _ := certs.KeyAddress(address)
	f.mu.Lock()
	data, ok := f.keys[addr]
	f.mu.Unlock()
	if !ok {
		return certs.Discovered{Tried: []string{"WKD 404", "no OPENPGPKEY record"}}
	}
	keys, err := certs.DiscoveredOpenPGP(data, address, certs.SourceWKD, f.now())
	if err != nil {
		return certs.Discovered{Tried: []string{"WKD key refused (" + err.Error() + ")"}}
	}
	return certs.Discovered{Keys: keys, TTL: f.ttl}
}

func (f *fakeDirectory) Uses(source string) bool { return !f.off[source] }

func discoveringRing(t *testing.T, now *time.Time, dir *fakeDirectory, o certs.DiscoveryOptions) (*certs.Keyring, *certs.SpoolKeyStore) {
	t.Helper()
	dir.now = func() time.Time { return *now }
	store := certs.NewSpoolKeyStore(openStore(t))
	return certs.NewDiscoveringKeyring(store, dir.now, dir, o), store
}

func TestDiscoveredOpenPGPKeepsOnlyKeysForTheAddress(t *testing.T) {
	bob := newEntity(t, "Bob", "bob@dest.test", nil)
	other := newEntity(t, "Mallory", "mallory@dest.test", nil)
	expired := newEntity(t, "Bob old", "bob@dest.test", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, KeyLifetimeSecs: 60})
	block := append(append(binary(t, other), binary(t, expired)...), binary(t, bob)...)
	keys, err := certs.DiscoveredOpenPGP(block, "Bob@DEST.test", certs.SourceWKD, testNow)
	if err != nil || len(keys) != 1 || keys[0].Fingerprint != hexFP(bob) || keys[0].Source != "wkd" || keys[0].Address != "bob@dest.test" {
		t.Fatalf("DiscoveredOpenPGP = %+v, %v", keys, err)
	}
	_, err = certs.DiscoveredOpenPGP(binary(t, other), "bob@dest.test", certs.SourceWKD, testNow)
	if !errors.Is(err, certs.ErrBadKey) || !strings.Contains(err.Error(), "no valid user ID for bob@dest.test") {
		t.Errorf("a key for another address: %v", err)
	}
	if _, err := certs.DiscoveredOpenPGP(armored(t, bob, true), "bob@dest.test", certs.SourceWKD, testNow); !errors.Is(err, certs.ErrBadKey) || !strings.Contains(err.Error(), "private key") {
		t.Errorf("a private key: %v", err)
	}
	if _, err := certs.DiscoveredOpenPGP(make([]byte, certs.MaxDiscoveredKeyBytes+1), "bob@dest.test", certs.SourceWKD, testNow); !errors.Is(err, certs.ErrBadKey) {
		t.Errorf("an oversized answer: %v", err)
	}
}

func TestDiscoveryCachesFoundAndMissingKeys(t *testing.T) {
	now := testNow
	bob := newEntity(t, "Bob", "bob@dest.test", nil)
	dir := &fakeDirectory{keys: map[string][]byte{"bob@dest.test": binary(t, bob)}, off: map[string]bool{}}
	ring, _ := discoveringRing(t, &now, dir, certs.DiscoveryOptions{TTL: time.Hour, NegativeTTL: 5 * time.Minute})
	ctx := context.Background()

	for range 3 {
		r, err := ring.FindOpenPGPRecipient(ctx, "Bob@dest.test")
		if err != nil || r.Key.Fingerprint != hexFP(bob) || r.Key.Source != "wkd" {
			t.Fatalf("FindOpenPGPRecipient = %+v, %v", r, err)
		}
	}
	if n := dir.lookups.Load(); n != 1 {
		t.Errorf("%d lookups for a found key within its TTL, want 1", n)
	}
	listed, _ := ring.KeysFor("bob@dest.test")
	if len(listed) != 1 || listed[0].Source != "wkd" || !listed[0].Until.Equal(testNow.Add(time.Hour)) {
		t.Errorf("stored entry %+v", listed)
	}
	now = now.Add(time.Hour)
	if _, err := ring.FindOpenPGPRecipient(ctx, "bob@dest.test"); err != nil || dir.lookups.Load() != 2 {
		t.Errorf("after the TTL: %v, %d lookups (want a second)", err, dir.lookups.Load())
	}

	// Nothing found: remembered for NegativeTTL, with what was tried.
	for range 5 {
		_, err := ring.FindOpenPGPRecipient(ctx, "carol@dest.test")
		if !errors.Is(err, certs.ErrNoUsableKey) || !strings.Contains(err.Error(), "no OpenPGP key for carol@dest.test: WKD 404, no OPENPGPKEY record") {
			t.Fatalf("no key: %v", err)
		}
	}
	if n := dir.lookups.Load(); n != 3 {
		t.Errorf("%d lookups, want one for carol's five messages", n-2)
	}
	now = now.Add(5 * time.Minute)
	dir.mu.Lock()
	dir.keys["carol@dest.test"] = binary(t, newEntity(t, "Carol", "carol@dest.test", nil))
	dir.mu.Unlock()
	if _, err := ring.FindOpenPGPRecipient(ctx, "carol@dest.test"); err != nil || dir.lookups.Load() != 4 {
		t.Errorf("after the negative TTL: %v, %d lookups", err, dir.lookups.Load())
	}

	// A source switched off: its cached keys are not used any more.
	dir.off["wkd"] = true
	if r, err := ring.OpenPGPRecipient("bob@dest.test"); err == nil {
		t.Errorf("a key of a source switched off was used: %+v", r)
	}
}

func TestDiscoveryNeverOverridesAnImportedKey(t *testing.T) {
	now := testNow
	imported := newEntity(t, "Bob", "bob@dest.test", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, KeyLifetimeSecs: 7200})
	published := newEntity(t, "Bob new", "bob@dest.test", nil)
	dir := &fakeDirectory{keys: map[string][]byte{"bob@dest.test": binary(t, published)}, off: map[string]bool{}}
	ring, _ := discoveringRing(t, &now, dir, certs.DiscoveryOptions{})
	if _, err := ring.ImportKeys(armored(t, imported, false)); err != nil {
		t.Fatal(err)
	}
	r, err := ring.FindOpenPGPRecipient(context.Background(), "bob@dest.test")
	if err != nil || r.Key.Fingerprint != hexFP(imported) || dir.lookups.Load() != 0 {
		t.Fatalf("with an imported key: %+v, %v, %d lookups", r, err, dir.lookups.Load())
	}
	// Even expired, the imported key is the admin's choice: no lookup.
	now = now.Add(2 * time.Hour)
	_, err = ring.FindOpenPGPRecipient(context.Background(), "bob@dest.test")
	if !errors.Is(err, certs.ErrNoUsableKey) || !strings.Contains(err.Error(), "expired") || dir.lookups.Load() != 0 {
		t.Errorf("expired imported key: %v, %d lookups", err, dir.lookups.Load())
	}
}

func TestDiscoveredKeyIsReplacedByAnImport(t *testing.T) {
	now := testNow
	bob := newEntity(t, "Bob", "bob@dest.test", nil)
	dir := &fakeDirectory{keys: map[string][]byte{"bob@dest.test": binary(t, newEntity(t, "Bob web", "bob@dest.test", nil))}, off: map[string]bool{}}
	ring, _ := discoveringRing(t, &now, dir, certs.DiscoveryOptions{})
	if _, err := ring.FindOpenPGPRecipient(context.Background(), "bob@dest.test"); err != nil {
		t.Fatal(err)
	}
	if _, err := ring.ImportKeys(armored(t, bob, false)); err != nil {
		t.Fatal(err)
	}
	r, err := ring.FindOpenPGPRecipient(context.Background(), "bob@dest.test")
	if err != nil || r.Key.Fingerprint != hexFP(bob) || r.Key.Source != "import" {
		t.Errorf("after an import: %+v, %v", r, err)
	}
}

func TestDiscoveryAsksOncePerBurstAndStaysBounded(t *testing.T) {
	now := testNow
	dir := &fakeDirectory{keys: map[string][]byte{}, off: map[string]bool{}, block: make(chan struct{})}
	for _, a := range []string{"a", "b", "c", "d", "e"} {
		dir.keys[a+"@dest.test"] = binary(t, newEntity(t, a, a+"@dest.test", nil))
	}
	ring, store := discoveringRing(t, &now, dir, certs.DiscoveryOptions{MaxEntries: 3})
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if _, err := ring.FindOpenPGPRecipient(context.Background(), "a@dest.test"); err != nil {
				t.Error(err)
			}
		})
	}
	for dir.lookups.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(dir.block)
	wg.Wait()
	if n := dir.lookups.Load(); n != 1 {
		t.Errorf("%d lookups for ten concurrent messages to one address, want 1", n)
	}
	for _, a := range []string{"b", "c", "d", "e"} {
		now = now.Add(time.Second)
		if _, err := ring.FindOpenPGPRecipient(context.Background(), a+"@dest.test"); err != nil {
			t.Fatal(err)
		}
	}
	all, _ := store.List()
	if len(all) > 3 {
		t.Errorf("%d discovered entries kept, bound 3", len(all))
	}
	if got, _ := ring.KeysFor("e@dest.test"); len(got) != 1 {
		t.Error("the newest entry was dropped")
	}
}

// FuzzDiscoveredOpenPGP: whatever a directory serves, reading it never
// panics, and every entry it yields is for the address asked for.
func FuzzDiscoveredOpenPGP(f *testing.F) {
	bob := newEntity(f, "Bob", "bob@dest.test", nil)
	f.Add(binary(f, bob))
	f.Add(armored(f, bob, false))
	f.Add(binary(f, newEntity(f, "Mallory", "mallory@dest.test", nil)))
	f.Add([]byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n=AAAA\n-----END PGP PUBLIC KEY BLOCK-----\n"))
	f.Add([]byte{0x99, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := certs.DiscoveredOpenPGP(data, "bob@dest.test", certs.SourceWKD, testNow)
		if err != nil {
			if len(keys) != 0 || !errors.Is(err, certs.ErrBadKey) {
				t.Fatalf("keys %d with error %v", len(keys), err)
			}
			return
		}
		for _, k := range keys {
			if k.Address != "bob@dest.test" || k.Source != certs.SourceWKD || len(k.Data) == 0 {
				t.Fatalf("entry %+v", k)
			}
		}
	})
}
