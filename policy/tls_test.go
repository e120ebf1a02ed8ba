package policy

import "testing"

func TestDecideTLS(t *testing.T) {
	for _, tc := range []struct {
		in    TLSInputs
		level TLSLevel
		by    string
		ext   bool
	}{
		{TLSInputs{Domain: "a.test", Configured: TLSMay, ConfiguredBy: "default"}, TLSMay, "", false},
		{TLSInputs{Domain: "a.test", Configured: TLSNone, ConfiguredBy: "a.test"}, TLSNone, "", false},
		{TLSInputs{Domain: "p.test", Configured: TLSVerify, ConfiguredBy: "p.test"}, TLSVerify, "tls_policy verify (p.test)", false},
		{TLSInputs{Domain: "a.test", Configured: TLSMay, ConfiguredBy: "default", RequireTLS: true}, TLSVerify, "REQUIRETLS", true},
		// REQUIRETLS raises "none" too: the sender's demand wins.
		{TLSInputs{Domain: "a.test", Configured: TLSNone, ConfiguredBy: "a.test", RequireTLS: true}, TLSVerify, "REQUIRETLS", true},
		{TLSInputs{Domain: "p.test", Configured: TLSEncrypt, ConfiguredBy: "p.test", RequireTLS: true}, TLSVerify, "tls_policy encrypt (p.test), REQUIRETLS", true},
		// History raises, never lowers.
		{TLSInputs{Domain: "h.test", Configured: TLSMay, ConfiguredBy: "default", History: &TLSHistory{TLSSeen: true, Since: "2026-01-02"}},
			TLSEncrypt, "domain history (TLS seen since 2026-01-02)", false},
		{TLSInputs{Domain: "h.test", Configured: TLSMay, ConfiguredBy: "default", History: &TLSHistory{TLSSeen: true, Verified: true, Since: "2026-01-02"}},
			TLSVerify, "domain history (verified TLS seen since 2026-01-02)", false},
		{TLSInputs{Domain: "h.test", Configured: TLSVerify, ConfiguredBy: "h.test", History: &TLSHistory{TLSSeen: true, Since: "2026-01-02"}},
			TLSVerify, "tls_policy verify (h.test)", false},
		{TLSInputs{Domain: "h.test", Configured: TLSMay, ConfiguredBy: "default", History: &TLSHistory{}}, TLSMay, "", false},
	} {
		got := DecideTLS(tc.in)
		if got.Level != tc.level || got.RequiredBy != tc.by || got.RequireTLSExtension != tc.ext {
			t.Errorf("DecideTLS(%+v) = %+v, want %s %q %v", tc.in, got, tc.level, tc.by, tc.ext)
		}
	}
	for _, name := range []string{"none", "may", "encrypt", "verify"} {
		l, err := ParseTLSLevel(name)
		if err != nil || l.String() != name {
			t.Errorf("ParseTLSLevel(%q) = %v, %v", name, l, err)
		}
	}
	if _, err := ParseTLSLevel("dane"); err == nil {
		t.Error("an unsupported level parsed")
	}
	if !(TLSNone < TLSMay && TLSMay < TLSEncrypt && TLSEncrypt < TLSVerify) {
		t.Error("levels are not ordered")
	}
	var unset TLSLevel
	if unset != TLSMay {
		t.Errorf("the zero level is %s, want may", unset)
	}
}
