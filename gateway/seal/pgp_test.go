package seal

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/gateway/delivery"
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
	return testOpenPGPKeyOf(t, now, lifetime, packet.PubKeyAlgoEdDSA)
}

// testOpenPGPKeyOf is testOpenPGPKey for another algorithm (RSA: 2048 bits).
func testOpenPGPKeyOf(t testing.TB, now time.Time, lifetime time.Duration, algo packet.PublicKeyAlgorithm) *certs.OpenPGPRecipient {
	t.Helper()
	e, err := openpgp.NewEntity("Archive", "", "", &packet.Config{Algorithm: algo, RSABits: 2048,
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

	act := p.Prepare(context.Background(), m, g, scheduler.BytesBody(body))
	if act.Outcome != nil || !strings.Contains(act.Protection, "the organisation archive key") {
		t.Fatalf("with a valid archive key: %+v", act)
	}
	now = start.Add(2 * time.Hour)
	act = p.Prepare(context.Background(), m, g, scheduler.BytesBody(body))
	if act.Send != nil || act.Outcome == nil || act.Outcome.Skip || act.Outcome.Status != "4.7.0" ||
		!strings.Contains(act.Outcome.Message, "organisation archive key unusable") || !strings.Contains(act.Outcome.Message, "expired") {
		t.Errorf("with an expired archive key: %+v %+v", act, act.Outcome)
	}
}

// TestArmoredSizeBounds: the output buffer is sized once from
// armoredSize; it must not be short (the buffer would grow by copying,
// holding the message twice).
func TestArmoredSizeBounds(t *testing.T) {
	now := time.Now()
	to := []*certs.OpenPGPRecipient{testOpenPGPKey(t, now, 0), testOpenPGPKeyOf(t, now, 0, packet.PubKeyAlgoRSA)}
	for _, n := range []int{0, 1, 511, 513, 65536, 1 << 20, 3<<20 + 17} {
		plain := make([]byte, n)
		rand.Read(plain)
		var out bytes.Buffer
		w, err := certs.EncryptOpenPGP(crlfWriter{&out}, to, now)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(plain)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if got, bound := out.Len(), armoredSize(n); got > bound || bound > got+got/50+8192 {
			t.Errorf("%d bytes: armored %d, armoredSize %d", n, got, bound)
		}
	}
}

// BenchmarkPGPMIME builds the PGP/MIME form of a whole message (text and
// a random binary attachment, base64 in the message; 1 MB and 25 MB) for
// one Curve25519 and one RSA-2048 recipient: header split, session key
// for both, AES-256 SEIPD, armor in CRLF lines. MB/s is over the input
// message; B/op against its size is the memory cost.
//
//	go test ./gateway/seal -run '^$' -bench PGPMIME -benchmem
func BenchmarkPGPMIME(b *testing.B) {
	now := time.Now()
	to := []*certs.OpenPGPRecipient{testOpenPGPKey(b, now, 0), testOpenPGPKeyOf(b, now, 0, packet.PubKeyAlgoRSA)}
	for _, size := range []int{1 << 20, 25 << 20} {
		attachment := make([]byte, size*3/4)
		rand.Read(attachment)
		msg := benchMessage(attachment)
		b.Run(fmt.Sprintf("%dMB", size>>20), func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := pgpMIME(msg, "Encrypted message", func(w io.Writer) (io.WriteCloser, error) {
					return certs.EncryptOpenPGP(w, to, now)
				}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func benchMessage(attachment []byte) []byte {
	var b bytes.Buffer
	b.WriteString("From: a@org.test\r\nTo: b@dest.test\r\nSubject: big\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n" +
		"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	enc := base64.StdEncoding.EncodeToString(attachment)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n--b--\r\n")
	return b.Bytes()
}

// sendBytes is what a method's action sends, as bytes.
func sendBytes(act scheduler.Action) []byte {
	b, _ := act.Send.(delivery.Bytes)
	return b
}
