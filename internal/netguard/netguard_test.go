package netguard

import (
	"net/netip"
	"strings"
	"testing"
)

func TestNonPublicAddresses(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1": "loopback", "::1": "loopback", "::ffff:127.0.0.9": "loopback",
		"10.1.2.3": "private", "172.16.0.1": "private", "192.168.1.1": "private", "fd00::1": "private",
		"169.254.169.254": "link-local", "fe80::1": "link-local",
		"0.0.0.0": "unspecified", "::": "unspecified", "0.1.2.3": "reserved",
		"100.64.0.1": "shared (carrier-grade NAT)", "224.0.0.1": "multicast", "ff02::1": "multicast",
		"255.255.255.255": "reserved", "192.0.2.1": "documentation", "2001:db8::1": "documentation",
		"198.18.0.1":  "benchmarking",
		"192.0.43.10": "", "2001:4860:4860::8888": "", "8.8.8.8": "",
	} {
		if got := NonPublic(netip.MustParseAddr(addr)); got != want {
			t.Errorf("%s: %q, want %q", addr, got, want)
		}
	}
}

func TestRefuse(t *testing.T) {
	allowed := []netip.Prefix{netip.MustParsePrefix("127.0.0.8/29")}
	if err := Refuse(netip.MustParseAddr("8.8.8.8"), nil); err != nil {
		t.Errorf("public address refused: %v", err)
	}
	if err := Refuse(netip.MustParseAddr("::ffff:127.0.0.9"), allowed); err != nil {
		t.Errorf("allowed network refused: %v", err)
	}
	err := Refuse(netip.MustParseAddr("127.0.0.1"), allowed)
	if err == nil || !strings.Contains(err.Error(), "loopback address 127.0.0.1") {
		t.Errorf("loopback outside the allowed network: %v", err)
	}
}
