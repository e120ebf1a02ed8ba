package seal

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/gateway/scheduler"
	"github.com/sealgate/sealgate/queue"
)

// keysOf serves one fixed recipient for every address.
type keysOf struct{ r *certs.OpenPGPRecipient }

func (k keysOf) FindOpenPGPRecipient(context.Context, string) (*certs.OpenPGPRecipient, error) {
	return k.r, nil
}

// testOpenPGPKey makes a Curve25519 key that expires after lifetime
// (0: never), checked as keys.archive_key_file is.
func testOpenPGPKey(t testing.TB, now time.Time, lifetime time.Duration) *certs.OpenPGPRecipient {
	t.Helper()
	e, err := openpgp.NewEntity("Archive", "", "", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA,
		KeyLifetimeSecs: uint32(lifetime / time.Second), Time: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	w, _ := armor.Encode(&b, openpgp.PublicKeyType, nil)
	e.Serialize(w)
	w.Close()
	r, err := certs.ParseArchiveKey(b.Bytes(), now)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestPGPArchiveKeyExpiredDefers: an archive key that expired after
// start holds PGP/MIME mail back (temporary, with the reason) rather
// than send it without the archive copy.
func TestPGPArchiveKeyExpiredDefers(t *testing.T) {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	now := start
	p := NewPGP(PGPOptions{Keys: keysOf{testOpenPGPKey(t, start, 0)}, Archive: testOpenPGPKey(t, start, time.Hour),
		Subject: "Encrypted message", Now: func() time.Time { return now }})
	m := &queue.Message{ID: "q1"}
	g := scheduler.Group{Rcpts: []string{"bob@dest.test"}, HasNext: true}
	body := []byte("Subject: hi\r\n\r\nsecret\r\n")

	act := p.Prepare(context.Background(), m, g, body)
	if act.Outcome != nil || !strings.Contains(act.Protection, "the organisation archive key") {
		t.Fatalf("with a valid archive key: %+v", act)
	}
	now = start.Add(2 * time.Hour)
	act = p.Prepare(context.Background(), m, g, body)
	if act.Send != nil || act.Outcome == nil || act.Outcome.Skip || act.Outcome.Status != "4.7.0" ||
		!strings.Contains(act.Outcome.Message, "organisation archive key unusable") || !strings.Contains(act.Outcome.Message, "expired") {
		t.Errorf("with an expired archive key: %+v %+v", act, act.Outcome)
	}
}
