package certs_test

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/queue"
)

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// newEntity makes a Curve25519 key (fast) unless cfg says otherwise.
func newEntity(t testing.TB, name, email string, cfg *packet.Config) *openpgp.Entity {
	t.Helper()
	if cfg == nil {
		cfg = &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA}
	}
	if cfg.Time == nil {
		cfg.Time = func() time.Time { return testNow.Add(-time.Hour) }
	}
	e, err := openpgp.NewEntity(name, "", email, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func armored(t testing.TB, e *openpgp.Entity, private bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	typ := openpgp.PublicKeyType
	if private {
		typ = openpgp.PrivateKeyType
	}
	w, err := armor.Encode(&buf, typ, nil)
	if err != nil {
		t.Fatal(err)
	}
	if private {
		err = e.SerializePrivate(w, nil)
	} else {
		err = e.Serialize(w)
	}
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	return buf.Bytes()
}

func binary(t testing.TB, e *openpgp.Entity) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := e.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestParseOpenPGPAcceptsPublicKeys(t *testing.T) {
	e := newEntity(t, "Bob", "Bob@Dest.Test", nil)
	for name, data := range map[string][]byte{"armored": armored(t, e, false), "binary": binary(t, e)} {
		keys, err := certs.ParseOpenPGP(data, testNow)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(keys) != 1 {
			t.Fatalf("%s: %d entries", name, len(keys))
		}
		k := keys[0]
		if k.Address != "bob@dest.test" || k.Kind != "openpgp" || k.Source != "import" ||
			k.Fingerprint != strings.ToUpper(strings.TrimSpace(hexFP(e))) || len(k.Data) == 0 || !k.Expires.IsZero() {
			t.Errorf("%s: entry %+v", name, k)
		}
		if k.Algorithm != "ECDH-Curve25519" {
			t.Errorf("%s: algorithm %q", name, k.Algorithm)
		}
	}
}

func hexFP(e *openpgp.Entity) string {
	var b strings.Builder
	for _, c := range e.PrimaryKey.Fingerprint {
		b.WriteString(strings.ToUpper(string("0123456789abcdef"[c>>4]) + string("0123456789abcdef"[c&15])))
	}
	return b.String()
}

func TestParseOpenPGPRefuses(t *testing.T) {
	good := newEntity(t, "Bob", "bob@dest.test", nil)

	expired := newEntity(t, "Old", "old@dest.test", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA,
		KeyLifetimeSecs: 60, Time: func() time.Time { return testNow.Add(-48 * time.Hour) }})

	revoked := newEntity(t, "Gone", "gone@dest.test", nil)
	if err := revoked.RevokeKey(packet.KeyCompromised, "lost", &packet.Config{Time: func() time.Time { return testNow.Add(-time.Minute) }}); err != nil {
		t.Fatal(err)
	}

	noEnc := newEntity(t, "Sign", "sign@dest.test", nil)
	noEnc.Subkeys = nil

	noEmail := newEntity(t, "Just a name", "", nil)

	weak := newEntity(t, "Weak", "weak@dest.test", &packet.Config{Algorithm: packet.PubKeyAlgoRSA, RSABits: 1024})

	twoKeys := append(binary(t, good), binary(t, expired)...)

	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"garbage", []byte("this is not a key\n"), "not an OpenPGP public key"},
		{"empty", nil, "no OpenPGP key found"},
		{"armored garbage", []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnonsense\n-----END PGP PUBLIC KEY BLOCK-----\n"), "refused"},
		{"armored private key", armored(t, good, true), "private key"},
		{"binary private key", func() []byte {
			var b bytes.Buffer
			good.SerializePrivate(&b, nil)
			return b.Bytes()
		}(), "private key"},
		{"expired", armored(t, expired, false), "expired"},
		{"revoked", armored(t, revoked, false), "revoked"},
		{"no encryption subkey", armored(t, noEnc, false), "no valid (unexpired, unrevoked) encryption-capable"},
		{"no email user ID", armored(t, noEmail, false), "no valid user ID with an email address"},
		{"RSA 1024", armored(t, weak, false), "RSA key of 1024 bits"},
		{"one bad key among good ones", twoKeys, "expired"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			keys, err := certs.ParseOpenPGP(c.data, testNow)
			if err == nil {
				t.Fatalf("accepted: %+v", keys)
			}
			if !errors.Is(err, certs.ErrBadKey) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want ErrBadKey saying %q", err, c.want)
			}
		})
	}
}

func openStore(t *testing.T) *queue.Store {
	t.Helper()
	dir := t.TempDir()
	s, err := queue.Open(queue.Options{Path: filepath.Join(dir, "spool.db"), KeyFile: filepath.Join(dir, "spool.key")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestKeyringRoundTrip(t *testing.T) {
	store := openStore(t)
	now := testNow
	ring := certs.NewKeyring(certs.NewSpoolKeyStore(store), func() time.Time { return now })

	bob := newEntity(t, "Bob", "bob@dest.test", nil)
	// A second email user ID on the same key: two entries.
	if err := bob.AddUserId("Bob at work", "", "robert@partner.test", &packet.Config{Time: func() time.Time { return testNow.Add(-time.Hour) }}); err != nil {
		t.Fatal(err)
	}
	added, err := ring.ImportKeys(armored(t, bob, false))
	if err != nil || len(added) != 2 {
		t.Fatalf("Import = %+v, %v", added, err)
	}
	if _, err := ring.ImportKeys([]byte("garbage")); !errors.Is(err, certs.ErrBadKey) {
		t.Errorf("garbage import: %v", err)
	}
	all, err := ring.Keys()
	if err != nil || len(all) != 2 || all[0].Address != "bob@dest.test" || all[1].Address != "robert@partner.test" {
		t.Fatalf("List = %+v, %v", all, err)
	}
	for _, k := range all {
		if k.Data != nil {
			t.Error("List returns key material")
		}
		if !k.Added.Equal(now) {
			t.Errorf("added %v", k.Added)
		}
	}
	// Lookup folds the case of the local part and canonicalises the domain.
	got, err := ring.KeysFor("BOB@DEST.TEST.")
	if err != nil || len(got) != 1 || got[0].Fingerprint != hexFP(bob) {
		t.Fatalf("Lookup = %+v, %v", got, err)
	}
	r, err := ring.OpenPGPRecipient("bob@dest.test")
	if err != nil || r.Key.Fingerprint != hexFP(bob) {
		t.Fatalf("OpenPGPRecipient = %+v, %v", r, err)
	}
	if _, err := ring.OpenPGPRecipient("carol@dest.test"); !errors.Is(err, certs.ErrNoUsableKey) || !strings.Contains(err.Error(), "no OpenPGP key for carol@dest.test") {
		t.Errorf("no key: %v", err)
	}

	n, err := ring.RemoveKey(strings.ToLower(hexFP(bob)))
	if err != nil || n != 2 {
		t.Fatalf("Remove = %d, %v", n, err)
	}
	if _, err := ring.RemoveKey(hexFP(bob)); !errors.Is(err, certs.ErrNoKey) {
		t.Errorf("second Remove: %v", err)
	}
	if all, _ := ring.Keys(); len(all) != 0 {
		t.Errorf("after Remove: %+v", all)
	}
}

func TestKeyExpiredAfterImportIsNotUsed(t *testing.T) {
	store := openStore(t)
	now := testNow
	ring := certs.NewKeyring(certs.NewSpoolKeyStore(store), func() time.Time { return now })
	e := newEntity(t, "Bob", "bob@dest.test", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, KeyLifetimeSecs: 2 * 3600})
	if _, err := ring.ImportKeys(armored(t, e, false)); err != nil {
		t.Fatal(err)
	}
	now = testNow.Add(2 * time.Hour)
	_, err := ring.OpenPGPRecipient("bob@dest.test")
	if !errors.Is(err, certs.ErrNoUsableKey) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired key: %v", err)
	}
}

func TestEncryptOpenPGPDecrypts(t *testing.T) {
	store := openStore(t)
	ring := certs.NewKeyring(certs.NewSpoolKeyStore(store), func() time.Time { return testNow })
	bob := newEntity(t, "Bob", "bob@dest.test", nil)
	carol := newEntity(t, "Carol", "carol@dest.test", &packet.Config{Algorithm: packet.PubKeyAlgoRSA, RSABits: 2048})
	var to []*certs.OpenPGPRecipient
	for _, e := range []*openpgp.Entity{bob, carol} {
		if _, err := ring.ImportKeys(armored(t, e, false)); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range []string{"bob@dest.test", "carol@dest.test"} {
		r, err := ring.OpenPGPRecipient(a)
		if err != nil {
			t.Fatal(err)
		}
		to = append(to, r)
	}
	out := encryptAndDecrypt(t, to, []*openpgp.Entity{bob, carol})
	if !bytes.HasPrefix(out, []byte("-----BEGIN PGP MESSAGE-----")) || bytes.Contains(out, []byte("lab results")) {
		t.Fatalf("not an armored encrypted message:\n%s", out)
	}
}

// encryptAndDecrypt encrypts a line to the recipients, checks that each
// of the private keys decrypts it, and returns the armored message.
func encryptAndDecrypt(t *testing.T, to []*certs.OpenPGPRecipient, private []*openpgp.Entity) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := certs.EncryptOpenPGP(&out, to, testNow)
	if err != nil {
		t.Fatal(err)
	}
	const secret = "the lab results\r\n"
	w.Write([]byte(secret))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for _, e := range private {
		block, err := armor.Decode(bytes.NewReader(out.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		md, err := openpgp.ReadMessage(block.Body, openpgp.EntityList{e}, nil, &packet.Config{Time: func() time.Time { return testNow }})
		if err != nil {
			t.Fatalf("%s cannot decrypt: %v", e.PrimaryIdentity().Name, err)
		}
		var plain bytes.Buffer
		if _, err := plain.ReadFrom(md.UnverifiedBody); err != nil {
			t.Fatal(err)
		}
		if plain.String() != secret {
			t.Errorf("decrypted %q", plain.String())
		}
		if !md.IsEncrypted || md.IsSigned {
			t.Errorf("message details %+v", md)
		}
	}
	return out.Bytes()
}
