package mailtext

import (
	"errors"
	"testing"
)

func TestCanonicalAddress(t *testing.T) {
	for _, tc := range []struct {
		in, addr, domain string
		err              error
	}{
		{"bob@Partner.Example", "bob@partner.example", "partner.example", nil},
		{"bob@partner.example.", "bob@partner.example", "partner.example", nil},
		{"Bob@PARTNER.example.", "Bob@partner.example", "partner.example", nil}, // local parts keep their case
		{"jürgen@bücher.example", "jürgen@xn--bcher-kva.example", "xn--bcher-kva.example", nil},
		{"a@xn--bcher-kva.example", "a@xn--bcher-kva.example", "xn--bcher-kva.example", nil},
		{`"bob"@x.example`, "bob@x.example", "x.example", nil},
		{`"> ENVID=x"@tenant.example`, `"> ENVID=x"@tenant.example`, "tenant.example", nil},
		{`"a\"b\\c"@x.example`, `"a\"b\\c"@x.example`, "x.example", nil},
		{`"john smith"@x.example`, `"john smith"@x.example`, "x.example", nil},
		{"@relay.example,@b.example:joe@x.example", "joe@x.example", "x.example", nil},
		{"postmaster", "postmaster", "", nil},
		{"joe@[192.0.2.1]", "joe@[192.0.2.1]", "[192.0.2.1]", nil},
		{"joe@[IPv6:2001:DB8::1]", "joe@[IPv6:2001:db8::1]", "[IPv6:2001:db8::1]", nil},
		{"a\x00b@x.example", "", "", ErrControlChar},
		{"a@x\x00.example", "", "", ErrControlChar},
		{"\"a\x01\"@x.example", "", "", ErrControlChar},
		{"a\rb@x.example", "", "", ErrControlChar},
		{"a\u0085b@x.example", "", "", ErrControlChar}, // C1 NEL
		{"a@x\u009b.example", "", "", ErrControlChar},  // C1 CSI
		{"a b@x.example", "", "", ErrBadAddress},
		{"a..b@x.example", "", "", ErrBadAddress},
		{`"unterminated@x.example`, "", "", ErrBadAddress},
		{"a@x..example", "", "", ErrBadDomain},
		{"a@-x.example", "", "", ErrBadDomain},
		{"a@x_y.example", "", "", ErrBadDomain},
		{"a@.", "", "", ErrBadDomain},
		{"a@[999.1.1.1]", "", "", ErrBadDomain},
		{"", "", "", ErrBadAddress},
	} {
		addr, domain, err := CanonicalAddress(tc.in)
		if !errors.Is(err, tc.err) || addr != tc.addr || domain != tc.domain {
			t.Errorf("CanonicalAddress(%q) = %q, %q, %v; want %q, %q, %v", tc.in, addr, domain, err, tc.addr, tc.domain, tc.err)
		}
	}
}

func TestCanonicalDomainIsOneForm(t *testing.T) {
	want, _ := CanonicalDomain("xn--bcher-kva.example")
	for _, d := range []string{"bücher.example", "BÜCHER.example.", "XN--BCHER-KVA.EXAMPLE", "xn--bcher-kva.example."} {
		if got, err := CanonicalDomain(d); err != nil || got != want {
			t.Errorf("CanonicalDomain(%q) = %q, %v; want %q", d, got, err, want)
		}
	}
}

// FuzzCanonicalAddress: whatever comes in, a canonical address has no
// control character, parses back to itself, and its domain is what
// Domain() reads from it.
func FuzzCanonicalAddress(f *testing.F) {
	for _, s := range []string{"a@b.example", `"> ENVID=x"@t.example`, "jürgen@bücher.example.", `"\\"@x`, "@a:b@c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		addr, domain, err := CanonicalAddress(s)
		if err != nil {
			return
		}
		for i := 0; i < len(addr); i++ {
			if addr[i] < 0x20 || addr[i] == 0x7f {
				t.Fatalf("%q → %q holds a control character", s, addr)
			}
		}
		again, d2, err := CanonicalAddress(addr)
		if err != nil || again != addr || d2 != domain {
			t.Fatalf("%q → %q → %q, %q, %v: not stable", s, addr, again, d2, err)
		}
		if domain != "" && Domain(addr) != domain {
			t.Fatalf("Domain(%q) = %q, want %q", addr, Domain(addr), domain)
		}
	})
}
