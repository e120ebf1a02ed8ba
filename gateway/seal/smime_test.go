package seal

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/gateway/scheduler"
	"github.com/sealgate/sealgate/queue"
)

// testCertificate makes a self-signed S/MIME certificate for email
// ("rsa" or "ec" key) and its store entry, as keys import makes it.
func testCertificate(t *testing.T, email, kind string, extra ...pkix.Extension) *certs.SMIMERecipient {
	t.Helper()
	var pub any
	var signer crypto.Signer
	usage := x509.KeyUsageKeyEncipherment
	switch kind {
	case "rsa":
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		pub, signer = k.Public(), k
	case "ec":
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		pub, signer = k.Public(), k
		usage = x509.KeyUsageKeyAgreement
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(int64(len(email)) + 0x100), Subject: pkix.Name{CommonName: email},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: usage,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}, EmailAddresses: []string{email},
		ExtraExtensions: extra,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := certs.ParseSMIME(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	keys[0].Data = nil
	return &certs.SMIMERecipient{Key: keys[0], Cert: cert}
}

// certificateBook is a RecipientCertificates over a map.
type certificateBook map[string]*certs.SMIMERecipient

func (b certificateBook) FindSMIMERecipient(_ context.Context, address string) (*certs.SMIMERecipient, error) {
	if r, ok := b[address]; ok {
		return r, nil
	}
	return nil, fmt.Errorf("%w: no S/MIME certificate for %s", certs.ErrNoUsableKey, address)
}

const smimeTestMessage = "From: a@org.test\r\nTo: b@dest.test, c@dest.test\r\nSubject: Results\r\nMessage-ID: <1@org.test>\r\n" +
	"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe results are in.\r\n"

func TestSMIMEEncryptsToEveryRecipient(t *testing.T) {
	book := certificateBook{"b@dest.test": testCertificate(t, "b@dest.test", "rsa"), "c@dest.test": testCertificate(t, "c@dest.test", "ec")}
	s := NewSMIME(SMIMEOptions{Certificates: book, Subject: "Encrypted message"})
	act := s.Prepare(context.Background(), &queue.Message{ID: "q1"},
		scheduler.Group{Domain: "dest.test", Method: "smime", Rcpts: []string{"b@dest.test", "c@dest.test"}}, scheduler.BytesBody(smimeTestMessage))
	if act.Outcome != nil {
		t.Fatalf("outcome %+v", act.Outcome)
	}
	head, _, _ := bytes.Cut(sendBytes(act), []byte("\r\n\r\n"))
	for _, want := range []string{"Subject: Encrypted message\r\n", "Content-Type: application/pkcs7-mime; smime-type=enveloped-data", "Message-ID: <1@org.test>"} {
		if !bytes.Contains(sendBytes(act), []byte(want)) {
			t.Errorf("outer message lacks %q:\n%s", want, head)
		}
	}
	if bytes.Contains(sendBytes(act), []byte("results are in")) || bytes.Contains(head, []byte("Results")) {
		t.Errorf("the content or the Subject is readable:\n%s", sendBytes(act))
	}
	b, c := book["b@dest.test"].Key, book["c@dest.test"].Key
	want := "smime: S/MIME enveloped-data, aes256-cbc encrypted to b@dest.test certificate serial " + b.Serial + " fingerprint " + b.Fingerprint +
		" (RSA-2048, rsaes-pkcs1-v1_5), c@dest.test certificate serial " + c.Serial + " fingerprint " + c.Fingerprint +
		" (EC-P256, ECDH key agreement, AES-256 key wrap)"
	if act.Protection != want {
		t.Errorf("protection\n%s\nwant\n%s", act.Protection, want)
	}
}

func TestSMIMEWithoutCertificate(t *testing.T) {
	book := certificateBook{"b@dest.test": testCertificate(t, "b@dest.test", "rsa")}
	s := NewSMIME(SMIMEOptions{Certificates: book, Subject: "Encrypted message"})
	group := scheduler.Group{Domain: "dest.test", Method: "smime", Rcpts: []string{"b@dest.test", "bob@partner.example"}, HasNext: true}

	act := s.Prepare(context.Background(), &queue.Message{ID: "q1"}, group, scheduler.BytesBody([]byte(smimeTestMessage)))
	if o := act.Outcome; o == nil || !o.Skip || o.Status != "4.7.0" || o.Message != "no S/MIME certificate for bob@partner.example" || act.Send != nil {
		t.Errorf("with a next method: %+v", act)
	}
	group.HasNext = false
	act = s.Prepare(context.Background(), &queue.Message{ID: "q1"}, group, scheduler.BytesBody([]byte(smimeTestMessage)))
	if o := act.Outcome; o == nil || o.Skip || o.Permanent || o.Status != "4.7.0" ||
		o.Message != "held: the chain ends in smime and no S/MIME certificate for bob@partner.example" {
		t.Errorf("at the end of the chain: %+v", act.Outcome)
	}

	// A header that cannot be cut into fields never leaves in clear.
	group.Rcpts = []string{"b@dest.test"}
	act = s.Prepare(context.Background(), &queue.Message{ID: "q1"}, group, scheduler.BytesBody([]byte("From a@org.test\r\n\r\nbody\r\n")))
	if o := act.Outcome; o == nil || !o.Permanent || o.Status != "5.6.0" || !strings.Contains(o.Message, "cannot be encrypted with S/MIME") {
		t.Errorf("malformed header at the end of the chain: %+v", act.Outcome)
	}
}

// gcmCapability is an smimeCapabilities extension (RFC 4262) listing
// AES-256-GCM.
func gcmCapability() pkix.Extension {
	// SMIMECapabilities ::= SEQUENCE OF SEQUENCE { capabilityID, … }
	value, _ := asn1.Marshal([]struct{ ID asn1.ObjectIdentifier }{{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 46}}})
	return pkix.Extension{Id: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 15}, Value: value}
}

func TestSMIMEUsesGCMOnlyWhenEveryCertificateListsIt(t *testing.T) {
	both := certificateBook{
		"b@dest.test": testCertificate(t, "b@dest.test", "ec", gcmCapability()),
		"c@dest.test": testCertificate(t, "c@dest.test", "rsa", gcmCapability()),
		"d@dest.test": testCertificate(t, "d@dest.test", "rsa"),
	}
	s := NewSMIME(SMIMEOptions{Certificates: both, Subject: "Encrypted message"})
	for rcpts, want := range map[string]string{
		"b@dest.test c@dest.test": "smime: S/MIME authenveloped-data, aes256-gcm encrypted to ",
		"b@dest.test d@dest.test": "smime: S/MIME enveloped-data, aes256-cbc encrypted to ",
	} {
		act := s.Prepare(context.Background(), &queue.Message{ID: "q1"},
			scheduler.Group{Domain: "dest.test", Method: "smime", Rcpts: strings.Fields(rcpts)}, scheduler.BytesBody(smimeTestMessage))
		if !strings.HasPrefix(act.Protection, want) {
			t.Errorf("%s: protection %q, want %q…", rcpts, act.Protection, want)
		}
		if gcm := strings.Contains(want, "gcm"); gcm != bytes.Contains(sendBytes(act), []byte("smime-type=authEnveloped-data")) {
			t.Errorf("%s: outer Content-Type does not match the cipher:\n%.400s", rcpts, sendBytes(act))
		}
	}
}
