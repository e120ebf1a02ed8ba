package certs_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/sealgate/sealgate/certs"
)

func TestParseArchiveKey(t *testing.T) {
	// An archive key is nobody's mailbox: a user ID without an address is fine.
	archive := newEntity(t, "Example Org archive", "", nil)
	r, err := certs.ParseArchiveKey(armored(t, archive, false), testNow)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%X", archive.PrimaryKey.Fingerprint); r.Key.Fingerprint != want {
		t.Errorf("fingerprint %s, want %s", r.Key.Fingerprint, want)
	}
	if err := r.Usable(testNow); err != nil {
		t.Errorf("Usable: %v", err)
	}

	expiring := newEntity(t, "Archive", "", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, KeyLifetimeSecs: 2 * 3600})
	r, err = certs.ParseArchiveKey(armored(t, expiring, false), testNow)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Usable(testNow.Add(2 * time.Hour)); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("an archive key past its expiry: Usable = %v", err)
	}

	noEnc := newEntity(t, "Sign", "", nil)
	noEnc.Subkeys = nil
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"garbage", []byte("not a key"), "not an OpenPGP public key"},
		{"private key", armored(t, archive, true), "private key"},
		{"two keys", append(binary(t, archive), binary(t, noEnc)...), "exactly one"},
		{"no encryption subkey", armored(t, noEnc, false), "encryption-capable"},
		{"RSA 1024", armored(t, newEntity(t, "Weak", "", &packet.Config{Algorithm: packet.PubKeyAlgoRSA, RSABits: 1024}), false), "RSA key of 1024 bits"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := certs.ParseArchiveKey(c.data, testNow)
			if !errors.Is(err, certs.ErrBadKey) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want ErrBadKey saying %q", err, c.want)
			}
		})
	}
}
