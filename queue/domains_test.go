package queue

import (
	"errors"
	"testing"
	"time"
)

func TestDomainTLSHistoryOnlyRises(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
	s := openTest(t, Options{Now: clock.Now})
	if d, err := s.DomainInfo("dest.test"); d != nil || err != nil {
		t.Fatalf("unknown domain: %+v %v", d, err)
	}
	s.ObserveTLS(TLSObservation{Domain: "Dest.TEST", Connected: true}) // plaintext first
	d, _ := s.DomainInfo("dest.test")
	if d == nil || d.TLSSeen || !d.FirstSeen.Equal(clock.Now()) {
		t.Fatalf("after plaintext: %+v", d)
	}
	clock.Add(time.Hour)
	s.ObserveTLS(TLSObservation{Domain: "dest.test", Connected: true, TLSVersion: "TLS1.3", Verified: true})
	clock.Add(time.Hour)
	s.ObserveTLS(TLSObservation{Domain: "dest.test", Connected: true, TLSVersion: "TLS1.2"}) // unverified, older
	s.ObserveTLS(TLSObservation{Domain: "dest.test", Connected: true})                       // plaintext again
	d, _ = s.DomainInfo("dest.test")
	if !d.TLSSeen || !d.Verified || len(d.TLSVersions) != 2 || d.TLSVersions[0] != "TLS1.2" {
		t.Errorf("history lowered or incomplete: %+v", d)
	}

	// Probes track a run of failures without lowering anything.
	s.ObserveTLS(TLSObservation{Domain: "dest.test", Probe: true, Connected: true, Error: "STARTTLS not offered"})
	failStart := clock.Now()
	clock.Add(24 * time.Hour)
	s.ObserveTLS(TLSObservation{Domain: "dest.test", Probe: true, Connected: true, Error: "STARTTLS not offered"})
	d, _ = s.DomainInfo("dest.test")
	if !d.ProbeFailingSince.Equal(failStart) || d.LastProbeError != "STARTTLS not offered" || !d.TLSSeen {
		t.Errorf("failing probes: %+v", d)
	}
	s.ObserveTLS(TLSObservation{Domain: "dest.test", Probe: true, Connected: true, TLSVersion: "TLS1.3"})
	if d, _ = s.DomainInfo("dest.test"); !d.ProbeFailingSince.IsZero() || !d.LastChecked.Equal(clock.Now()) {
		t.Errorf("a good probe must end the failing run: %+v", d)
	}

	ds, _ := s.Domains()
	if len(ds) != 1 || ds[0].Domain != "dest.test" {
		t.Errorf("Domains = %+v", ds)
	}
	if err := s.ResetDomain("DEST.test"); err != nil {
		t.Fatal(err)
	}
	if d, _ := s.DomainInfo("dest.test"); d != nil {
		t.Errorf("after reset: %+v", d)
	}
	if err := s.ResetDomain("dest.test"); !errors.Is(err, ErrNotFound) {
		t.Errorf("reset of an unknown domain: %v", err)
	}
}
