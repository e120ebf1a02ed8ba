package gateway_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/internal/testutil"
	"github.com/sealgate/sealgate/queue"
)

// TestSecureMailToAnSMIMEARecipient: with a resolver trusted to validate
// DNSSEC, a certificate published in an authenticated DANE-EE SMIMEA
// record — and nowhere else — serves a [secure] message: it leaves as
// S/MIME and `openssl cms -decrypt` opens it. The same kind of record in
// an answer without the AD bit serves nothing, and the history says so.
func TestSecureMailToAnSMIMEARecipient(t *testing.T) {
	needOpenSSL(t)
	dir := t.TempDir()
	bob := newOpenSSLPeer(t, dir, "bob@dest.test", "ec:P-256")
	carol := newOpenSSLPeer(t, dir, "carol@dest.test", "rsa:2048")
	der := func(p opensslPeer) []byte {
		data, err := os.ReadFile(p.cert)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := pem.Decode(data)
		return b.Bytes
	}
	owner := func(local string) string {
		sum := sha256.Sum256([]byte(local))
		return hex.EncodeToString(sum[:28]) + "._smimecert.dest.test"
	}
	dns := testutil.NewDNSServer(t)
	dns.AddSMIMEA(owner("bob"), 3, 0, 0, der(bob))
	dns.AddSMIMEA(owner("carol"), 3, 0, 0, der(carol))
	dns.SetAD(true)
	e := newE2EWith(t, dns, testutil.NewCA(t), "outbound: {dnssec_trusted_resolver: true}\nkeys: {discovery: {wkd: false}}\n")
	sink := e.destination("dest.test", "127.0.0.2", testutil.SinkOptions{TLS: true, CA: e.ca})

	id := e.send("alice@org.test", []string{"bob@dest.test"}, message("[secure] Minutes", "Minutes of the board."))
	m := e.waitState(id, "bob@dest.test", queue.StateDelivered)
	if !hasEvent(m, "skipped", "no OpenPGP key for bob@dest.test: no OPENPGPKEY record") {
		t.Errorf("history does not say why pgp was skipped: %+v", m.Events)
	}
	keys, _ := e.gw.Keys().KeysFor("bob@dest.test")
	if len(keys) != 1 || keys[0].Source != certs.SourceSMIMEA || keys[0].Trust != certs.TrustDANEEE || keys[0].Kind != certs.KindSMIME {
		t.Fatalf("key store: %+v", keys)
	}
	if att := lastAttempt(m); att == nil || !strings.HasPrefix(att.Protection, "smime: S/MIME ") ||
		!strings.Contains(att.Protection, "bob@dest.test certificate serial "+keys[0].Serial+" fingerprint "+keys[0].Fingerprint) {
		t.Errorf("attempt %+v", att)
	}
	got := sink.WaitMessages(t, 1, 20*time.Second)[0]
	if bytes.Contains(got.Data, []byte("Minutes of the board")) || !bytes.Contains(got.Data, []byte("application/pkcs7-mime")) {
		t.Fatalf("not S/MIME:\n%s", got.Data)
	}
	delivered, plain := filepath.Join(dir, "delivered.eml"), filepath.Join(dir, "plain.eml")
	if err := os.WriteFile(delivered, got.Data, 0o600); err != nil {
		t.Fatal(err)
	}
	opensslRun(t, dir, "cms", "-decrypt", "-in", delivered, "-recip", bob.cert, "-inkey", bob.key, "-out", plain)
	if out, err := os.ReadFile(plain); err != nil || !bytes.Contains(out, []byte("Minutes of the board.")) || !bytes.Contains(out, []byte("Subject: Minutes")) {
		t.Fatalf("openssl cms -decrypt: %v\n%s", err, out)
	}

	dns.SetAD(false)
	id = e.send("alice@org.test", []string{"carol@dest.test"}, message("[secure] Unsigned", "Not for an unauthenticated certificate."))
	deadline := time.Now().Add(20 * time.Second)
	for {
		m, err := e.gw.Store().Get(id)
		if err == nil && hasEvent(m, "skipped", "no S/MIME certificate for carol@dest.test: SMIMEA record not DNSSEC-authenticated, not used") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no skip with the reason: %+v", m.Events)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if keys, _ := e.gw.Keys().KeysFor("carol@dest.test"); len(keys) != 0 {
		t.Errorf("a certificate from an unauthenticated answer was kept: %+v", keys)
	}
	if n := len(sink.Messages()); n != 1 {
		t.Errorf("%d messages delivered to the destination, want only bob's", n)
	}
}
