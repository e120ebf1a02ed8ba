package probe

import (
	"strings"
	"testing"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/policy"
)

func TestJudgeSaysWhatDeliveryWouldDoAndWhatChangesIt(t *testing.T) {
	ok := ProbeResult{Domain: "d.test", Host: "mx.d.test", STARTTLS: true, TLSVersion: "TLS1.3", Verified: true}
	unverified := ok
	unverified.Verified, unverified.CertError = false, "x509: certificate signed by unknown authority"
	handshake := ProbeResult{Domain: "d.test", Host: "mx.d.test", STARTTLS: true, Error: "TLS handshake: protocol version not supported"}
	enforce := &policy.MTASTSPolicy{Mode: policy.MTASTSEnforce}
	tp := func(yaml map[string]string) *policy.TransportPolicy {
		t.Helper()
		p, err := policy.NewTransportPolicy(configTLSPolicy(yaml))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		name          string
		r             ProbeResult
		req           policy.TLSRequirement
		delivery, fix string
		noFix         bool
	}{
		{"verified", ok, tp(nil).Requirement("d.test", false, nil, nil), "over TLS1.3 with a verified certificate", "", true},
		{"unverified under may", unverified, tp(nil).Requirement("d.test", false, nil, nil), "certificate not verified", "", true},
		{"unverified under verify", unverified, tp(map[string]string{"d.test": "verify"}).Requirement("d.test", false, nil, nil),
			"deferred: TLS level verify", "outbound.tls_policy.domains: {d.test: encrypt}", false},
		{"unverified under MTA-STS", unverified, tp(nil).Requirement("d.test", false, nil, enforce),
			"deferred: TLS level verify (required by MTA-STS enforce)", "its postmaster must fix the server", false},
		{"handshake under may", handshake, tp(nil).Requirement("d.test", false, nil, nil), "in clear after the failed TLS handshake", "", true},
		{"handshake with history", handshake, tp(nil).Requirement("d.test", false, &policy.TLSHistory{TLSSeen: true, Since: "2026-01-01"}, nil),
			"deferred: TLS level encrypt (required by domain history", "outbound.tls_policy.domains: {d.test: none}", false},
		{"no host", ProbeResult{Domain: "d.test", Error: "no mail host answered: connection refused"}, tp(nil).Requirement("d.test", false, nil, nil),
			"deferred, retried until queue.expiry: no mail host answered", "check its MX records", false},
	} {
		v := Judge(c.r, c.req)
		if !strings.Contains(v.Delivery, c.delivery) || !strings.Contains(v.Change, c.fix) || c.noFix != (v.Change == "") {
			t.Errorf("%s: %+v", c.name, v)
		}
	}
}

func configTLSPolicy(domains map[string]string) config.TLSPolicy {
	return config.TLSPolicy{Default: "may", Domains: domains}
}

func TestJudgeDANEOnlyAndMTASTSHosts(t *testing.T) {
	r := ProbeResult{Domain: "d.test", Host: "mx.d.test", STARTTLS: true, TLSVersion: "TLS1.3", Verified: true}
	p, err := policy.NewTransportPolicy(config.TLSPolicy{Default: "may", Domains: map[string]string{"d.test": "dane-only"}})
	if err != nil {
		t.Fatal(err)
	}
	if v := Judge(r, p.Requirement("d.test", false, nil, nil)); !strings.Contains(v.Delivery, "dane-only requires") || !strings.Contains(v.Change, "{d.test: verify}") {
		t.Errorf("dane-only without TLSA: %+v", v)
	}
	sts := &policy.MTASTSPolicy{Mode: policy.MTASTSEnforce, MX: []string{"other.d.test"}}
	if v := Judge(r, configTLSPolicyReq(t, sts)); !strings.Contains(v.Delivery, "does not name mx.d.test") {
		t.Errorf("an MX the MTA-STS policy does not name: %+v", v)
	}
	r.TLSA, r.TLSASecure = []string{"3 1 1 abcd"}, true
	if v := Judge(r, configTLSPolicyReq(t, nil)); len(v.Notes) == 0 || !strings.Contains(v.Notes[0], "TLSA") {
		t.Errorf("DANE note: %+v", v)
	}
}

func configTLSPolicyReq(t *testing.T, sts *policy.MTASTSPolicy) policy.TLSRequirement {
	p, err := policy.NewTransportPolicy(configTLSPolicy(nil))
	if err != nil {
		t.Fatal(err)
	}
	return p.Requirement("d.test", false, nil, sts)
}
