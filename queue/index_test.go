package queue

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Nothing that names a correspondent is in the spool file in clear: not
// the envelope, and not the destination domains of the TLS history, the
// MTA-STS cache or the TLSRPT aggregates.
func TestNoDomainInClearOnDisk(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Path: filepath.Join(dir, "spool.db"), KeyFile: filepath.Join(dir, "spool.key")}
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	const partner = "secret-partner.example"
	enqueue(t, s, "alice@org.test", "b", "bob@"+partner)
	if err := s.ObserveTLS(TLSObservation{Domain: partner, Connected: true, TLSVersion: "TLS1.3", Verified: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutMTASTS(MTASTSEntry{Domain: partner, ID: "1", Body: []byte("version: STSv1"), Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordTLSSession(TLSSession{Day: "2026-01-02", Domain: partner, PolicyType: "sts", OK: true}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	raw, err := os.ReadFile(opts.Path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("secret-partner")) {
		t.Errorf("the spool file holds the domain %s in clear", partner)
	}

	// Lookups by name still work after a reopen.
	s, err = Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if d, err := s.DomainInfo("Secret-Partner.example"); err != nil || d == nil || !d.Verified {
		t.Errorf("DomainInfo = %+v, %v", d, err)
	}
	if ds, _ := s.Domains(); len(ds) != 1 || ds[0].Domain != partner {
		t.Errorf("Domains = %+v", ds)
	}
	if e, err := s.MTASTS(partner); err != nil || e == nil || e.ID != "1" {
		t.Errorf("MTASTS = %+v, %v", e, err)
	}
	recs, err := s.TLSRPTBefore("2026-01-03")
	if err != nil || len(recs) != 1 || recs[0].Domain != partner || recs[0].Successes != 1 {
		t.Fatalf("TLSRPTBefore = %+v, %v", recs, err)
	}
	if err := s.DeleteTLSRPT(recs[0]); err != nil {
		t.Fatal(err)
	}
	if recs, _ := s.TLSRPTBefore("2026-01-03"); len(recs) != 0 {
		t.Errorf("after DeleteTLSRPT: %+v", recs)
	}
	if err := s.ResetDomain(partner); err != nil {
		t.Errorf("ResetDomain: %v", err)
	}
}

// Records that an older spool keeps under clear names move to hashed
// keys when it is opened, and stay readable.
func TestClearDomainKeysAreMigrated(t *testing.T) {
	s := openTest(t, Options{})
	legacy := func(bucket []byte, kind, key string, v any) {
		data, _ := json.Marshal(v)
		err := s.db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucket).Put([]byte(key), s.seal.seal(kind, key, data))
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	legacy(bucketDomains, kindDomain, "old.example", DomainInfo{Domain: "old.example", TLSSeen: true})
	legacy(bucketMTASTS, kindMTASTS, "old.example", MTASTSEntry{Domain: "old.example", ID: "7"})
	legacy(bucketTLSRPT, kindTLSRPT, "2026-01-02/old.example/sts", TLSRPTRecord{Day: "2026-01-02", Domain: "old.example", PolicyType: "sts", Failures: 3})
	s.Close()

	s, err := Open(s.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.db.View(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketDomains, bucketMTASTS, bucketTLSRPT} {
			tx.Bucket(b).ForEach(func(k, _ []byte) error {
				if bytes.Contains(k, []byte("old.example")) {
					t.Errorf("bucket %s still keyed by the clear name: %q", b, k)
				}
				return nil
			})
		}
		return nil
	})
	if d, _ := s.DomainInfo("old.example"); d == nil || !d.TLSSeen {
		t.Errorf("migrated TLS history: %+v", d)
	}
	if e, _ := s.MTASTS("old.example"); e == nil || e.ID != "7" {
		t.Errorf("migrated MTA-STS entry: %+v", e)
	}
	if recs, _ := s.TLSRPTBefore("2026-01-03"); len(recs) != 1 || recs[0].Failures != 3 {
		t.Errorf("migrated TLSRPT aggregate: %+v", recs)
	}
}

// A session counted into a day while its report is out is not lost with
// the sent aggregate: it stays for the next report, and only it.
func TestTLSRPTLateSessionStaysForTheNextReport(t *testing.T) {
	s := openTest(t, Options{})
	fail := TLSSession{Day: "2026-01-02", Domain: "p.example", PolicyType: "sts",
		Failure: TLSRPTFailure{ResultType: "certificate-expired", ReceivingMX: "mx.p.example"}}
	ok := TLSSession{Day: "2026-01-02", Domain: "p.example", PolicyType: "sts", OK: true}
	for _, sess := range []TLSSession{ok, ok, fail} {
		if err := s.RecordTLSSession(sess); err != nil {
			t.Fatal(err)
		}
	}
	sent, err := s.TLSRPTBefore("2026-01-03")
	if err != nil || len(sent) != 1 {
		t.Fatalf("due: %+v %v", sent, err)
	}
	s.RecordTLSSession(fail) // late, while the report is out
	if err := s.DeleteTLSRPT(sent[0]); err != nil {
		t.Fatal(err)
	}
	left, _ := s.TLSRPTBefore("2026-01-03")
	if len(left) != 1 || left[0].Successes != 0 || left[0].Failures != 1 || len(left[0].Details) != 1 || left[0].Details[0].Count != 1 {
		t.Fatalf("after the report: %+v, want the late failure alone", left)
	}
	if err := s.DeleteTLSRPT(left[0]); err != nil {
		t.Fatal(err)
	}
	if left, _ := s.TLSRPTBefore("2026-01-03"); len(left) != 0 {
		t.Errorf("after the second report: %+v", left)
	}
}
