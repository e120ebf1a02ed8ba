package certs

import (
	"bytes"
	"crypto/rand"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
)

// TestArmorWriterMatchesGoCrypto: our armor is byte for byte go-crypto's
// (with its CRC24 footer), whatever the sizes of the writes.
func TestArmorWriterMatchesGoCrypto(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 47, 48, 49, 95, 96, 97, 1000, 65536, 100003} {
		data := make([]byte, n)
		rand.Read(data)
		var want bytes.Buffer
		w, _ := armor.Encode(&want, "PGP MESSAGE", nil)
		w.Write(data)
		w.Close()
		for _, step := range []int{1, 5, 48, 1000, n + 1} {
			var got bytes.Buffer
			a, err := newArmorWriter(&got)
			if err != nil {
				t.Fatal(err)
			}
			for p := data; len(p) > 0; {
				k := min(step, len(p))
				a.Write(p[:k])
				p = p[k:]
			}
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want.Bytes()) {
				t.Fatalf("%d bytes in writes of %d:\ngot  %q\nwant %q", n, step, got.Bytes(), want.Bytes())
			}
		}
		block, err := armor.Decode(&want)
		if err != nil {
			t.Fatalf("%d bytes: go-crypto cannot read it back: %v", n, err)
		}
		var back bytes.Buffer
		if _, err := back.ReadFrom(block.Body); err != nil || !bytes.Equal(back.Bytes(), data) {
			t.Fatalf("%d bytes: read back %v", n, err)
		}
	}
}
