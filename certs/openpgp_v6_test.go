package certs_test

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/sealgate/sealgate/certs"
)

// TestV6KeysImportAndEncrypt: RFC 9580 (v6) keys, made by go-crypto
// (GnuPG 2.2 cannot make them), import with the same checks as v4 keys
// and are encrypted to as the key advertises: SEIPD v2 (AEAD) with a v6
// PKESK when it lists SEIPD v2 in its features, else SEIPD v1 with a v3
// PKESK (RFC 9580 §5.1, §5.13) — also when a group mixes it with a v4
// key without AEAD. Every recipient decrypts in each case.
func TestV6KeysImportAndEncrypt(t *testing.T) {
	ring := certs.NewKeyring(certs.NewSpoolKeyStore(openStore(t)), func() time.Time { return testNow })
	// Bob's key advertises AEAD (SEIPD v2), Dave's does not.
	bob := newEntity(t, "Bob", "bob@dest.test", &packet.Config{V6Keys: true, Algorithm: packet.PubKeyAlgoEd25519,
		AEADConfig: &packet.AEADConfig{DefaultMode: packet.AEADModeOCB}})
	dave := newEntity(t, "Dave", "dave@dest.test", &packet.Config{V6Keys: true, Algorithm: packet.PubKeyAlgoRSA, RSABits: 3072})
	carol := newEntity(t, "Carol", "carol@dest.test", nil) // v4, EdDSA legacy
	if bob.PrimaryKey.Version != 6 || carol.PrimaryKey.Version != 4 {
		t.Fatalf("key versions %d %d", bob.PrimaryKey.Version, carol.PrimaryKey.Version)
	}
	for _, e := range []*openpgp.Entity{bob, dave, carol} {
		keys, err := ring.ImportKeys(armored(t, e, false))
		if err != nil || len(keys) != 1 {
			t.Fatalf("import of %s: %+v, %v", e.PrimaryIdentity().Name, keys, err)
		}
	}
	if keys, _ := ring.KeysFor("bob@dest.test"); len(keys) != 1 || len(keys[0].Fingerprint) != 64 || keys[0].Fingerprint != hexFP(bob) || keys[0].Algorithm != "X25519" {
		t.Errorf("v6 key in the store: %+v (want the 32-byte v6 fingerprint)", keys)
	}
	if keys, _ := ring.KeysFor("dave@dest.test"); len(keys) != 1 || keys[0].Algorithm != "RSA-3072" {
		t.Errorf("v6 RSA key in the store: %+v", keys)
	}

	// The import checks hold for v6 keys too.
	if _, err := ring.ImportKeys(armored(t, bob, true)); !errors.Is(err, certs.ErrBadKey) || !strings.Contains(err.Error(), "private key") {
		t.Errorf("a v6 private key: %v", err)
	}
	short := newEntity(t, "Old", "old@dest.test", &packet.Config{V6Keys: true, Algorithm: packet.PubKeyAlgoEd25519, KeyLifetimeSecs: 60})
	if _, err := ring.ImportKeys(armored(t, short, false)); !errors.Is(err, certs.ErrBadKey) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("an expired v6 key: %v", err)
	}

	for _, tc := range []struct {
		name      string
		to        []*openpgp.Entity
		seipd     int
		pkeskVers []int
	}{
		{"v6 alone", []*openpgp.Entity{bob}, 2, []int{6}},
		{"v6 RSA without AEAD", []*openpgp.Entity{dave}, 1, []int{3}},
		{"v6 with a v4 key without AEAD", []*openpgp.Entity{bob, carol}, 1, []int{3, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var to []*certs.OpenPGPRecipient
			for _, e := range tc.to {
				r, err := ring.OpenPGPRecipient(e.PrimaryIdentity().UserId.Email)
				if err != nil {
					t.Fatal(err)
				}
				to = append(to, r)
			}
			seipd, pkesk := packetVersions(t, encryptAndDecrypt(t, to, tc.to))
			if seipd != tc.seipd || !slices.Equal(pkesk, tc.pkeskVers) {
				t.Errorf("SEIPD v%d, PKESK versions %v; want v%d, %v", seipd, pkesk, tc.seipd, tc.pkeskVers)
			}
		})
	}
}

// packetVersions reads an armored message's packets up to the
// encrypted data: the SEIPD version and each PKESK's version.
func packetVersions(t *testing.T, msg []byte) (seipd int, pkesk []int) {
	t.Helper()
	block, err := armor.Decode(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	r := packet.NewReader(block.Body)
	for {
		p, err := r.Next()
		if err != nil {
			t.Fatalf("reading packets: %v", err)
		}
		switch p := p.(type) {
		case *packet.EncryptedKey:
			pkesk = append(pkesk, p.Version)
		case *packet.SymmetricallyEncrypted:
			return p.Version, pkesk
		}
	}
}
