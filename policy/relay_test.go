package policy

import (
	"net/netip"
	"testing"
)

func TestMayRelay(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}
	for _, tc := range []struct {
		client string
		user   string
		allow  bool
		reason string
	}{
		{"10.1.2.3", "", true, "trusted network 10.0.0.0/8"},
		{"::ffff:10.1.2.3", "", true, "trusted network 10.0.0.0/8"},
		{"2001:db8::25", "", true, "trusted network 2001:db8::/32"},
		{"192.0.2.1", "", false, "192.0.2.1 is not in a trusted network and not authenticated"},
		{"192.0.2.1", "alice", true, "authenticated as alice"},
		{"11.0.0.1", "", false, "11.0.0.1 is not in a trusted network and not authenticated"},
	} {
		d := MayRelay(netip.MustParseAddr(tc.client), tc.user, trusted)
		if d.Allowed != tc.allow || d.Reason != tc.reason {
			t.Errorf("MayRelay(%s, %q) = %+v, want %v %q", tc.client, tc.user, d, tc.allow, tc.reason)
		}
	}
	if d := MayRelay(netip.MustParseAddr("127.0.0.1"), "", nil); d.Allowed {
		t.Error("no trusted networks must mean no relaying without AUTH")
	}
}
