package policy

import (
	"errors"
	"testing"
	"time"
)

func TestParseMTASTS(t *testing.T) {
	good := "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\nextension: ignored\r\n"
	p, err := ParseMTASTS([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode != MTASTSEnforce || len(p.MX) != 2 || p.MaxAge != 7*24*time.Hour {
		t.Errorf("parsed %+v", p)
	}
	for host, want := range map[string]bool{
		"mail.example.com": true, "MAIL.example.com.": true, "mx1.example.net": true,
		"example.net": false, "a.b.example.net": false, "evil.example.com": false, "mail.example.com.evil": false,
	} {
		if got := p.MatchesMX(host); got != want {
			t.Errorf("MatchesMX(%q) = %v, want %v", host, got, want)
		}
	}
	if p, err := ParseMTASTS([]byte("version: STSv1\nmode: none\nmax_age: 0\n")); err != nil || p.Mode != MTASTSNone {
		t.Errorf("mode none without mx: %+v %v", p, err)
	}

	for name, body := range map[string]string{
		"wrong version":   "version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 1\n",
		"no version":      "mode: enforce\nmx: a.test\nmax_age: 1\n",
		"unknown mode":    "version: STSv1\nmode: strict\nmx: a.test\nmax_age: 1\n",
		"no mx":           "version: STSv1\nmode: enforce\nmax_age: 1\n",
		"no max_age":      "version: STSv1\nmode: enforce\nmx: a.test\n",
		"max_age too big": "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 31557601\n",
		"max_age not int": "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: -5\n",
		"two modes":       "version: STSv1\nmode: enforce\nmode: none\nmx: a.test\nmax_age: 1\n",
		"bad pattern":     "version: STSv1\nmode: enforce\nmx: a.*.test\nmax_age: 1\n",
		"no colon":        "version: STSv1\nmode enforce\n",
		"html error page": "<html><body>404</body></html>",
	} {
		if _, err := ParseMTASTS([]byte(body)); !errors.Is(err, ErrBadMTASTSPolicy) {
			t.Errorf("%s: err = %v, want ErrBadMTASTSPolicy", name, err)
		}
	}
}

func TestParseMTASTSRecord(t *testing.T) {
	if id, err := ParseMTASTSRecord("v=STSv1; id=20260101T000000;"); err != nil || id != "20260101T000000" {
		t.Errorf("id %q %v", id, err)
	}
	for _, bad := range []string{"v=STSv2; id=1", "id=1; v=STSv1", "v=STSv1;", "v=STSv1; id=" + string(make([]byte, 40))} {
		if _, err := ParseMTASTSRecord(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestDecideTLSWithMTASTS(t *testing.T) {
	enforce := &MTASTSPolicy{Mode: MTASTSEnforce, MX: []string{"mx.d.test"}}
	r := DecideTLS(TLSInputs{Domain: "d.test", Configured: TLSMay, ConfiguredBy: "default", MTASTS: enforce})
	if r.Level != TLSVerify || r.RequiredBy != "MTA-STS enforce" || r.MXAllowed("evil.d.test") || !r.MXAllowed("mx.d.test") {
		t.Errorf("enforce: %+v", r)
	}
	testing := &MTASTSPolicy{Mode: MTASTSTesting, MX: []string{"mx.d.test"}}
	r = DecideTLS(TLSInputs{Domain: "d.test", Configured: TLSMay, ConfiguredBy: "default", MTASTS: testing})
	if r.Level != TLSMay || r.MTASTSMode() != "testing" || !r.MXAllowed("evil.d.test") {
		t.Errorf("testing mode must not change delivery: %+v", r)
	}
}

// FuzzParseMTASTS: the parser never panics, and what it accepts is a
// policy the rest of the code can rely on.
func FuzzParseMTASTS(f *testing.F) {
	f.Add([]byte("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n"))
	f.Add([]byte("version: STSv1\nmode: none\nmax_age: 0\n"))
	f.Add([]byte("version: STSv1\nmode: testing\nmx: *.\nmax_age: 99999999999\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := ParseMTASTS(body)
		if err != nil {
			return
		}
		if p.Mode != MTASTSEnforce && p.Mode != MTASTSTesting && p.Mode != MTASTSNone {
			t.Fatalf("accepted mode %q", p.Mode)
		}
		if p.Mode != MTASTSNone && len(p.MX) == 0 {
			t.Fatal("accepted an enforce/testing policy without mx")
		}
		if p.MaxAge < 0 || p.MaxAge > maxMTASTSAge*time.Second {
			t.Fatalf("accepted max_age %s", p.MaxAge)
		}
		for _, mx := range p.MX {
			p.MatchesMX(mx)
		}
	})
}
