package gateway_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/internal/testutil"
	"github.com/sealgate/sealgate/queue"
)

// keyDirectory is a partner's Web Key Directory: openpgpkey.DOMAIN on a
// loopback address, with a certificate from the test CA, serving keys by
// their WKD path and counting requests.
type keyDirectory struct {
	srv  *httptest.Server
	mu   sync.Mutex
	keys map[string][]byte
	hits map[string]int
}

func newKeyDirectory(t *testing.T, dns *testutil.DNSServer, ca *testutil.CA, domain, ip string) *keyDirectory {
	t.Helper()
	d := &keyDirectory{keys: map[string][]byte{}, hits: map[string]int{}}
	d.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.hits[r.URL.Query().Get("l")]++
		key, ok := d.keys[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(key)
	}))
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	d.srv.Listener.Close()
	d.srv.Listener = l
	d.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	d.srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "openpgpkey."+domain)}}
	d.srv.StartTLS()
	t.Cleanup(d.srv.Close)
	dns.AddA("openpgpkey."+domain, ip)
	return d
}

func (d *keyDirectory) port() int { return d.srv.Listener.Addr().(*net.TCPAddr).Port }

// publish serves key at the advanced method's path for local@domain;
// hash is the z-base-32 SHA-1 of the local part (gpg-wks-client prints
// it), computed here by GnuPG's own --with-wkd-hash listing.
func (d *keyDirectory) publish(domain, hash string, key []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.keys["/.well-known/openpgpkey/"+domain+"/hu/"+hash] = key
}

func (d *keyDirectory) requests(local string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.hits[local]
}

// wkdHash asks gpg for the WKD hash of its key's user ID, so that the
// test does not check our hash against itself.
func (g *gnupg) wkdHash() string {
	for _, line := range strings.Split(string(g.run(nil, "--with-wkd-hash", "--list-keys")), "\n") {
		line = strings.TrimSpace(line)
		if local, _, ok := strings.Cut(line, "@"); ok && !strings.ContainsAny(local, " <") && len(local) == 32 {
			return local
		}
	}
	g.t.Fatal("gpg lists no WKD hash")
	return ""
}

// TestSecureMailToAPartnerWithOnlyAWKDKey: nobody imported Bob's key,
// but his domain publishes it in its Web Key Directory. A [secure]
// message leaves encrypted to that key, gpg opens it, the key store
// lists the key as discovered, and a second message does not ask the
// directory again. Carol has no key anywhere: her messages are held
// with the reason saying what was tried, and the directory is asked
// once for all of them.
func TestSecureMailToAPartnerWithOnlyAWKDKey(t *testing.T) {
	needGPG(t)
	bob := newGnuPG(t, "Bob <bob@dest.test>", "ed25519", false)
	dns := testutil.NewDNSServer(t)
	ca := testutil.NewCA(t)
	dir := newKeyDirectory(t, dns, ca, "dest.test", "127.0.0.8")
	dir.publish("dest.test", bob.wkdHash(), bob.run(nil, "--export"))
	e := newE2EWith(t, dns, ca, fmt.Sprintf("keys: {wkd_port: %d}\n", dir.port()))
	sink := e.destination("dest.test", "127.0.0.2", testutil.SinkOptions{TLS: true, CA: e.ca})

	id := e.send("alice@org.test", []string{"bob@dest.test"}, message("[secure] Contract", "The signed contract is attached."))
	m := e.waitState(id, "bob@dest.test", queue.StateDelivered)
	if att := lastAttempt(m); att == nil || !strings.Contains(att.Protection, "pgp: PGP/MIME encrypted to bob@dest.test key "+bob.fingerprint()) {
		t.Errorf("attempt %+v", att)
	}
	got := sink.WaitMessages(t, 1, 20*time.Second)[0]
	if !bytes.Contains(got.Data, []byte("multipart/encrypted")) || bytes.Contains(got.Data, []byte("signed contract")) || !bytes.Contains(got.Data, []byte("Subject: Encrypted message")) {
		t.Fatalf("the message did not leave encrypted:\n%s", got.Data)
	}
	start := bytes.Index(got.Data, []byte("-----BEGIN PGP MESSAGE-----"))
	end := bytes.Index(got.Data, []byte("-----END PGP MESSAGE-----"))
	if start < 0 || end < start {
		t.Fatalf("no PGP message in:\n%s", got.Data)
	}
	plain, status, err := bob.try(got.Data[start:end+len("-----END PGP MESSAGE-----")], "--decrypt")
	if err != nil {
		t.Fatalf("gpg --decrypt: %v\n%s", err, status)
	}
	if !bytes.Contains(plain, []byte("The signed contract is attached.")) || !bytes.Contains(plain, []byte("Subject: Contract")) {
		t.Errorf("decrypted:\n%s", plain)
	}
	keys, err := e.gw.Keys().KeysFor("bob@dest.test")
	if err != nil || len(keys) != 1 || keys[0].Source != certs.SourceWKD || keys[0].Fingerprint != bob.fingerprint() || keys[0].Until.IsZero() {
		t.Errorf("key store after discovery: %+v, %v", keys, err)
	}

	id = e.send("alice@org.test", []string{"bob@dest.test"}, message("[secure] Again", "Second letter."))
	e.waitState(id, "bob@dest.test", queue.StateDelivered)
	if n := dir.requests("bob"); n != 1 {
		t.Errorf("the directory was asked %d times for bob, want once (the key is kept)", n)
	}

	// No key for carol: the default chain (pgp, smime, escrow) holds her
	// message, each attempt saying what was tried, the directory asked once.
	var ids []string
	for i := range 3 {
		ids = append(ids, e.send("alice@org.test", []string{"carol@dest.test"}, message(fmt.Sprintf("[secure] Note %d", i), "For Carol.")))
	}
	for _, id := range ids {
		deadline := time.Now().Add(20 * time.Second)
		for {
			m, err := e.gw.Store().Get(id)
			if err == nil && hasEvent(m, "skipped", "no OpenPGP key for carol@dest.test: WKD 404 (advanced), OPENPGPKEY not used") && len(attemptsOrSkips(m)) >= 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("message %s: no skip with the reason: %+v", id, m.Events)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if n := dir.requests("carol"); n != 1 {
		t.Errorf("the directory was asked %d times for carol's three messages, want once", n)
	}
	if len(sink.Messages()) != 2 {
		t.Errorf("%d messages reached the destination, want only bob's two", len(sink.Messages()))
	}
}

// attemptsOrSkips are the events of a message that record a delivery
// step for a recipient.
func attemptsOrSkips(m *queue.Message) []queue.Event {
	var out []queue.Event
	for _, ev := range m.Events {
		if ev.Kind == "skipped" || ev.Attempt != nil {
			out = append(out, ev)
		}
	}
	return out
}

// TestSecureMailToAnOPENPGPKEYPublishedWithDNSSEC: with a resolver
// trusted to validate DNSSEC, a key published in an authenticated
// OPENPGPKEY record serves a [secure] message; the same record in an
// answer without the AD bit serves nothing, and the history says so.
func TestSecureMailToAnOPENPGPKEYPublishedWithDNSSEC(t *testing.T) {
	needGPG(t)
	bob := newGnuPG(t, "Bob <bob@dest.test>", "ed25519", false)
	carol := newGnuPG(t, "Carol <carol@dest.test>", "ed25519", false)
	dns := testutil.NewDNSServer(t)
	owner := func(local string) string {
		sum := sha256.Sum256([]byte(local))
		return hex.EncodeToString(sum[:28]) + "._openpgpkey.dest.test"
	}
	dns.AddOPENPGPKEY(owner("bob"), bob.run(nil, "--export"))
	dns.AddOPENPGPKEY(owner("carol"), carol.run(nil, "--export"))
	dns.SetAD(true)
	e := newE2EWith(t, dns, testutil.NewCA(t), "outbound: {dnssec_trusted_resolver: true}\nkeys: {discovery: {wkd: false}}\n")
	sink := e.destination("dest.test", "127.0.0.2", testutil.SinkOptions{TLS: true, CA: e.ca})

	id := e.send("alice@org.test", []string{"bob@dest.test"}, message("[secure] Minutes", "Minutes of the board."))
	m := e.waitState(id, "bob@dest.test", queue.StateDelivered)
	if att := lastAttempt(m); att == nil || !strings.Contains(att.Protection, "bob@dest.test key "+bob.fingerprint()) {
		t.Errorf("attempt %+v", att)
	}
	got := sink.WaitMessages(t, 1, 20*time.Second)[0]
	start := bytes.Index(got.Data, []byte("-----BEGIN PGP MESSAGE-----"))
	if start < 0 || bytes.Contains(got.Data, []byte("Minutes of the board")) {
		t.Fatalf("not encrypted:\n%s", got.Data)
	}
	if plain, status, err := bob.try(got.Data[start:], "--decrypt"); err != nil || !bytes.Contains(plain, []byte("Minutes of the board.")) {
		t.Fatalf("gpg --decrypt: %v\n%s\n%s", err, status, plain)
	}
	if keys, _ := e.gw.Keys().KeysFor("bob@dest.test"); len(keys) != 1 || keys[0].Source != certs.SourceOPENPGPKEY {
		t.Errorf("key store: %+v", keys)
	}

	dns.SetAD(false)
	id = e.send("alice@org.test", []string{"carol@dest.test"}, message("[secure] Unsigned", "Not for an unauthenticated key."))
	deadline := time.Now().Add(20 * time.Second)
	for {
		m, err := e.gw.Store().Get(id)
		if err == nil && hasEvent(m, "skipped", "no OpenPGP key for carol@dest.test: OPENPGPKEY record not DNSSEC-authenticated, not used") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no skip with the reason: %+v", m.Events)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(sink.Messages()) != 1 {
		t.Errorf("%d messages delivered, want only bob's", len(sink.Messages()))
	}
}
