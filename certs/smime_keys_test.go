package certs

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// memRecords is a RecordStore in memory, for the key store tests of this
// package (the spool-backed one is tested in openpgp_test.go).
type memRecords struct {
	mu      sync.Mutex
	records map[string][]byte
}

func (m *memRecords) PutKeyRecord(id string, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.records == nil {
		m.records = map[string][]byte{}
	}
	m.records[id] = slices.Clone(data)
	return nil
}

func (m *memRecords) DeleteKeyRecords(ids []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, id := range ids {
		delete(m.records, id)
	}
	return nil
}

func (m *memRecords) ForEachKeyRecord(prefix string, fn func(id string, data []byte) error) error {
	m.mu.Lock()
	ids := make([]string, 0, len(m.records))
	for id := range m.records {
		if strings.HasPrefix(id, prefix) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	m.mu.Unlock()
	for _, id := range ids {
		if err := fn(id, m.records[id]); err != nil {
			return err
		}
	}
	return nil
}

func certPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// certBundle is a DER PKCS #7 certs-only SignedData, as a .p7b holds.
func certBundle(certs ...*x509.Certificate) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oidCMSSignedData)
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1Int64(1)
				b.AddASN1(cbasn1.SET, func(*cryptobyte.Builder) {})
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oidCMSData) })
				b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					for _, c := range certs {
						b.AddBytes(c.Raw)
					}
				})
				b.AddASN1(cbasn1.SET, func(*cryptobyte.Builder) {})
			})
		})
	})
	return b.BytesOrPanic()
}

func sha256Hex(der []byte) string {
	sum := sha256.Sum256(der)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

func TestParseSMIMEAcceptsCertificates(t *testing.T) {
	root := smimeTestRoot(t, "partner CA")
	rsaCert := smimeTestCert(t, smimeCertSpec{issuer: root})
	ecCert := smimeTestCert(t, smimeCertSpec{key: "p256", emails: []string{"Carol@Partner.Example", "c.smith@partner.example"}})
	now := time.Now()

	cases := []struct {
		name  string
		data  []byte
		want  []string // address/fingerprint
		check func(t *testing.T, keys []Key)
	}{
		{name: "PEM", data: certPEM(rsaCert), want: []string{"bob@partner.example/" + sha256Hex(rsaCert.Raw)},
			check: func(t *testing.T, keys []Key) {
				k := keys[0]
				if k.Kind != KindSMIME || k.Algorithm != "RSA-2048" || k.Serial != SMIMESerial(rsaCert) || k.Source != SourceImport ||
					!k.Expires.Equal(rsaCert.NotAfter) || !k.Created.Equal(rsaCert.NotBefore) || k.Issuer != "CN=partner CA" ||
					k.Subject != "CN=Bob Partner" || string(k.Data) != string(rsaCert.Raw) {
					t.Errorf("entry %+v", k)
				}
			}},
		{name: "DER with two addresses", data: ecCert.Raw,
			want: []string{"carol@partner.example/" + sha256Hex(ecCert.Raw), "c.smith@partner.example/" + sha256Hex(ecCert.Raw)},
			check: func(t *testing.T, keys []Key) {
				if keys[0].Algorithm != "EC-P256" {
					t.Errorf("algorithm %q", keys[0].Algorithm)
				}
			}},
		{name: "PEM with the chain and text around it", data: append(append([]byte("subject=CN=Bob\n"), certPEM(rsaCert, root.cert)...), "trailer\n"...),
			want: []string{"bob@partner.example/" + sha256Hex(rsaCert.Raw)}},
		{name: "PKCS #7 bundle (DER)", data: certBundle(root.cert, rsaCert, ecCert),
			want: []string{"bob@partner.example/" + sha256Hex(rsaCert.Raw), "carol@partner.example/" + sha256Hex(ecCert.Raw),
				"c.smith@partner.example/" + sha256Hex(ecCert.Raw)}},
		{name: "PKCS #7 bundle (PEM)", data: pem.EncodeToMemory(&pem.Block{Type: "PKCS7", Bytes: certBundle(rsaCert)}),
			want: []string{"bob@partner.example/" + sha256Hex(rsaCert.Raw)}},
		{name: "the same certificate twice", data: certPEM(rsaCert, rsaCert), want: []string{"bob@partner.example/" + sha256Hex(rsaCert.Raw)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !looksLikeSMIME(c.data) {
				t.Error("not recognised as certificate material")
			}
			keys, err := ParseSMIME(c.data, now)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, k := range keys {
				got = append(got, k.Address+"/"+k.Fingerprint)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("entries %v, want %v", got, c.want)
			}
			if c.check != nil {
				c.check(t, keys)
			}
		})
	}
}

func TestParseSMIMERefuses(t *testing.T) {
	now := time.Now()
	good := smimeTestCert(t, smimeCertSpec{})
	ecKey := smimeTestKey(t, "p256").(*ecdsa.PrivateKey)
	pkcs8, err := x509.MarshalPKCS8PrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, _ := x509.MarshalPKIXPublicKey(ecKey.Public())
	// The start of a PFX: version 3, then authSafe as a ContentInfo.
	var pfx cryptobyte.Builder
	pfx.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(3)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oidCMSData)
			b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { b.AddASN1OctetString([]byte{0x30, 0}) })
		})
	})
	root := smimeTestRoot(t, "a CA")
	expired := smimeTestCert(t, smimeCertSpec{notBefore: now.Add(-48 * time.Hour), notAfter: now.Add(-time.Hour)})

	cases := []struct {
		name string
		data []byte
		want string
		is   error
	}{
		{name: "DER garbage", data: []byte{0x30, 0x03, 0x02, 0x01, 0x05}, want: "neither an OpenPGP public key nor an S/MIME certificate"},
		{name: "PEM garbage", data: []byte("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"), want: "not a valid X.509 certificate"},
		{name: "no PEM block", data: []byte("-----BEGIN CERTIFICATE-----\nunterminated"), want: "no PEM certificate found"},
		{name: "PEM private key", data: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), want: "never holds their secrets"},
		{name: "certificate with its key", data: append(certPEM(good), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})...),
			want: "private key (PEM EC PRIVATE KEY)"},
		{name: "encrypted PEM private key", data: pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}}), want: "private key"},
		{name: "DER private key", data: pkcs8, want: "private key (DER)"},
		{name: "PKCS #12", data: pfx.BytesOrPanic(), want: "PKCS #12"},
		{name: "bare public key", data: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), want: "names no address"},
		{name: "unknown PEM block", data: pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: []byte{1}}), want: `PEM "X509 CRL" block`},
		{name: "expired", data: certPEM(expired), want: "expired", is: ErrSMIMECertExpired},
		{name: "not yet valid", data: certPEM(smimeTestCert(t, smimeCertSpec{notBefore: now.Add(time.Hour), notAfter: now.Add(48 * time.Hour)})),
			want: "not valid yet"},
		{name: "no email address", data: certPEM(smimeTestCert(t, smimeCertSpec{emails: []string{}})), want: "no email address in subjectAltName"},
		{name: "email only in the subject DN", data: certPEM(smimeTestCert(t, smimeCertSpec{emails: []string{}, subjectDN: "bob@partner.example"})),
			want: "subject DN"},
		{name: "signing only", data: certPEM(smimeTestCert(t, smimeCertSpec{keyUsage: x509.KeyUsageDigitalSignature})), want: "keyEncipherment"},
		{name: "TLS server certificate", data: certPEM(smimeTestCert(t, smimeCertSpec{extUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})),
			want: "does not allow email protection"},
		{name: "RSA-1024", data: certPEM(smimeTestCert(t, smimeCertSpec{key: "rsa1024"})), want: "RSA key of 1024 bits"},
		{name: "only a CA", data: certPEM(root.cert), want: "only CA certificates"},
		{name: "one bad certificate among good ones", data: certBundle(good, expired), want: "expired"},
		{name: "empty bundle", data: certBundle(), want: "holds no certificate"},
		{name: "every reason on one line", data: certPEM(smimeTestCert(t, smimeCertSpec{emails: []string{}, keyUsage: x509.KeyUsageDigitalSignature})),
			want: "an RSA key needs keyEncipherment; smime certificate: no email address in subjectAltName"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			keys, err := ParseSMIME(c.data, now)
			if err == nil {
				t.Fatalf("accepted: %+v", keys)
			}
			if !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q, want ErrBadKey saying %q on one line", err, c.want)
			}
		})
	}
}

func TestKeyringSMIMERoundTrip(t *testing.T) {
	now := time.Now()
	ring := NewKeyring(NewSpoolKeyStore(&memRecords{}), func() time.Time { return now })
	bob := smimeTestCert(t, smimeCertSpec{emails: []string{"Bob@Partner.Example"}, notAfter: now.Add(2 * time.Hour)})
	added, err := ring.ImportKeys(certPEM(bob))
	if err != nil || len(added) != 1 || added[0].Data != nil || !added[0].Added.Equal(now.UTC()) {
		t.Fatalf("ImportKeys = %+v, %v", added, err)
	}
	// Refused imports store nothing.
	if _, err := ring.ImportKeys(certBundle(smimeTestCert(t, smimeCertSpec{emails: []string{"carol@partner.example"}}),
		smimeTestCert(t, smimeCertSpec{emails: []string{}}))); !errors.Is(err, ErrBadKey) {
		t.Errorf("a bundle with a bad certificate: %v", err)
	}
	all, err := ring.Keys()
	if err != nil || len(all) != 1 || all[0].Address != "bob@partner.example" || all[0].Kind != KindSMIME || all[0].Data != nil {
		t.Fatalf("Keys = %+v, %v", all, err)
	}

	r, err := ring.SMIMERecipient("BOB@partner.example.")
	if err != nil || r.Cert.SerialNumber.Cmp(bob.SerialNumber) != 0 || r.Key.Fingerprint != sha256Hex(bob.Raw) {
		t.Fatalf("SMIMERecipient = %+v, %v", r, err)
	}
	if _, err := ring.OpenPGPRecipient("bob@partner.example"); !errors.Is(err, ErrNoUsableKey) || !strings.Contains(err.Error(), "no OpenPGP key") {
		t.Errorf("a certificate is not an OpenPGP key: %v", err)
	}
	if _, err := ring.SMIMERecipient("carol@partner.example"); !errors.Is(err, ErrNoUsableKey) ||
		err.Error() != "certs: no usable key: no S/MIME certificate for carol@partner.example" {
		t.Errorf("no certificate: %v", err)
	}

	// Checked again at use: expired since import.
	now = now.Add(3 * time.Hour)
	if _, err := ring.SMIMERecipient("bob@partner.example"); !errors.Is(err, ErrNoUsableKey) ||
		!strings.Contains(err.Error(), "no usable S/MIME certificate for bob@partner.example (certificate Bob@Partner.Example (serial "+
			bob.SerialNumber.Text(16)+"): smime certificate: expired on") {
		t.Errorf("expired since import: %v", err)
	}

	// Removed by fingerprint, written as openssl writes it.
	var colons []string
	for i := 0; i < len(all[0].Fingerprint); i += 2 {
		colons = append(colons, all[0].Fingerprint[i:i+2])
	}
	if n, err := ring.RemoveKey(strings.ToLower(strings.Join(colons, ":"))); err != nil || n != 1 {
		t.Fatalf("RemoveKey = %d, %v", n, err)
	}
	if all, _ := ring.Keys(); len(all) != 0 {
		t.Errorf("after RemoveKey: %+v", all)
	}
}

func TestSMIMERecipientChecksUsage(t *testing.T) {
	// A record that would not pass import today (a store written by an
	// older version, a shared store) is checked again at use.
	now := time.Now()
	records := &memRecords{}
	store := NewSpoolKeyStore(records)
	signOnly := smimeTestCert(t, smimeCertSpec{keyUsage: x509.KeyUsageDigitalSignature})
	discovered := smimeTestCert(t, smimeCertSpec{emails: []string{"dave@partner.example"}})
	for _, k := range []Key{
		{Address: "bob@partner.example", Kind: KindSMIME, Fingerprint: sha256Hex(signOnly.Raw), Source: SourceImport, Data: signOnly.Raw},
		{Address: "dave@partner.example", Kind: KindSMIME, Fingerprint: sha256Hex(discovered.Raw), Source: "smimea", Data: discovered.Raw},
		{Address: "erin@partner.example", Kind: KindSMIME, Fingerprint: sha256Hex(discovered.Raw), Source: SourceImport, Data: discovered.Raw},
	} {
		if err := store.Put(k); err != nil {
			t.Fatal(err)
		}
	}
	ring := NewKeyring(store, func() time.Time { return now })
	for addr, want := range map[string]string{
		"bob@partner.example": "keyEncipherment",
		// Discovered entries serve only a keyring that discovers, which
		// checks their trust again (discover_smime_test.go).
		"dave@partner.example": "no S/MIME certificate for dave@partner.example",
		"erin@partner.example": "issued for another address", // the certificate does not name erin
	} {
		_, err := ring.SMIMERecipient(addr)
		if !errors.Is(err, ErrNoUsableKey) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", addr, err, want)
		}
	}
}

// TestParseSMIMEOpenSSLFiles imports what openssl writes: a PEM
// certificate, DER, a certs-only PKCS #7 bundle in DER and PEM (the
// .p7b a CA hands out), and refuses the PKCS #12 and the key file.
func TestParseSMIMEOpenSSLFiles(t *testing.T) {
	dir := t.TempDir()
	openssl := smimeOpenSSL(t)
	caPath, peers := smimeTestCA(t, dir, map[string]string{"bob@dest.test": "rsa:2048", "carol@dest.test": "ec:P-256"})
	bob, carol := peers["bob@dest.test"], peers["carol@dest.test"]
	smimeRun(t, dir, openssl, "x509", "-in", bob.certPath, "-outform", "DER", "-out", "bob.der")
	smimeRun(t, dir, openssl, "crl2pkcs7", "-nocrl", "-certfile", bob.certPath, "-certfile", carol.certPath, "-certfile", caPath,
		"-outform", "DER", "-out", "bundle.p7b")
	smimeRun(t, dir, openssl, "crl2pkcs7", "-nocrl", "-certfile", carol.certPath, "-out", "carol.p7b.pem")
	smimeRun(t, dir, openssl, "pkcs12", "-export", "-in", bob.certPath, "-inkey", bob.keyPath, "-passout", "pass:", "-out", "bob.p12")
	read := func(name string) []byte {
		if !filepath.IsAbs(name) {
			name = filepath.Join(dir, name)
		}
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	now := time.Now()
	for name, want := range map[string][]string{
		bob.certPath:    {"bob@dest.test"},
		"bob.der":       {"bob@dest.test"},
		"bundle.p7b":    {"bob@dest.test", "carol@dest.test"},
		"carol.p7b.pem": {"carol@dest.test"},
	} {
		keys, err := ParseSMIME(read(name), now)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		var got []string
		for _, k := range keys {
			got = append(got, k.Address)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: addresses %v, want %v", name, got, want)
		}
	}
	for name, want := range map[string]string{"bob.p12": "PKCS #12", bob.keyPath: "private key", carol.keyPath: "private key"} {
		if keys, err := ParseSMIME(read(name), now); !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %+v, %v; want %q", name, keys, err, want)
		}
	}
	// The serial is written as openssl writes it.
	out := smimeRun(t, dir, openssl, "x509", "-in", bob.certPath, "-noout", "-serial")
	if keys, _ := ParseSMIME(read(bob.certPath), now); len(keys) != 1 || "serial="+keys[0].Serial != strings.TrimSpace(string(out)) {
		t.Errorf("serial %+v, openssl says %s", keys, out)
	}
	out = smimeRun(t, dir, openssl, "x509", "-in", bob.certPath, "-noout", "-fingerprint", "-sha256")
	_, fp, _ := strings.Cut(strings.TrimSpace(string(out)), "=")
	if keys, _ := ParseSMIME(read(bob.certPath), now); len(keys) != 1 || keys[0].Fingerprint != NormalizeFingerprint(fp) {
		t.Errorf("fingerprint %+v, openssl says %s", keys, out)
	}
}

// TestDERCertificateEndingInWhitespaceBytes: a DER certificate is binary,
// and its signature may end in a byte that is ASCII white space; the
// import must not cut it off (it once did, for about one certificate in
// forty).
func TestDERCertificateEndingInWhitespaceBytes(t *testing.T) {
	for i := 0; i < 400; i++ {
		der := smimeTestCert(t, smimeCertSpec{key: "p256"}).Raw
		if last := der[len(der)-1]; last != ' ' && last != '\n' && last != '\r' && last != '\t' && last != '\v' && last != '\f' {
			continue
		}
		if _, err := ParseSMIME(der, time.Now()); err != nil {
			t.Fatalf("DER certificate ending in %#x refused: %v", der[len(der)-1], err)
		}
		return
	}
	t.Skip("no certificate ending in a white-space byte among 400")
}
