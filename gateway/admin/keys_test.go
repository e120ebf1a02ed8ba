package admin

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/sealgate/sealgate/certs"
)

func publicKey(t *testing.T, email string, private bool) ([]byte, string) {
	t.Helper()
	e, err := openpgp.NewEntity("Test", "", email, &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	typ := openpgp.PublicKeyType
	if private {
		typ = openpgp.PrivateKeyType
	}
	w, _ := armor.Encode(&out, typ, nil)
	if private {
		e.SerializePrivate(w, nil)
	} else {
		e.Serialize(w)
	}
	w.Close()
	return out.Bytes(), certs.NormalizeFingerprint(strings.ToUpper(bytesHex(e.PrimaryKey.Fingerprint)))
}

func bytesHex(b []byte) string {
	const digits = "0123456789ABCDEF"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

func TestKeysAPI(t *testing.T) {
	store := openStore(t)
	srv := serve(t, Options{Store: store, Keys: certs.NewKeyring(certs.NewSpoolKeyStore(store), nil)}, false)
	c := NewAdminClient(srv.Listener.Addr().String(), testToken)

	pub, fp := publicKey(t, "bob@dest.test", false)
	keys, err := c.ImportKeys(pub)
	if err != nil || len(keys) != 1 || keys[0].Fingerprint != fp || keys[0].Data != nil {
		t.Fatalf("ImportKeys = %+v, %v", keys, err)
	}
	secret, _ := publicKey(t, "eve@dest.test", true)
	if _, err := c.ImportKeys(secret); !errors.Is(err, certs.ErrBadKey) || !strings.Contains(err.Error(), "private key") {
		t.Errorf("private key import: %v", err)
	}
	if all, err := c.Keys(); err != nil || len(all) != 1 || all[0].Address != "bob@dest.test" {
		t.Errorf("Keys = %+v, %v", all, err)
	}
	if got, err := c.KeysFor("BOB@dest.test"); err != nil || len(got) != 1 {
		t.Errorf("KeysFor = %+v, %v", got, err)
	}
	if got, err := c.KeysFor("nobody@dest.test"); err != nil || len(got) != 0 {
		t.Errorf("KeysFor(nobody) = %+v, %v", got, err)
	}
	if n, err := c.RemoveKey(fp); err != nil || n != 1 {
		t.Errorf("RemoveKey = %d, %v", n, err)
	}
	if _, err := c.RemoveKey(fp); !errors.Is(err, certs.ErrNoKey) {
		t.Errorf("RemoveKey again: %v", err)
	}

	// The token guards the key routes like every other.
	if _, err := NewAdminClient(srv.Listener.Addr().String(), strings.Repeat("x", 64)).Keys(); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("Keys with a wrong token: %v", err)
	}
	if code, _ := do(t, srv, http.MethodGet, "/api/v1/keys/not%20an%20address"); code != http.StatusBadRequest {
		t.Errorf("GET of a malformed address: %d", code)
	}
	if code, _ := do(t, srv, http.MethodPost, "/api/v1/keys"); code != http.StatusBadRequest {
		t.Errorf("POST without a body: %d", code)
	}
}
