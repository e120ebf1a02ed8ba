package mailtext

import (
	"bytes"
	"testing"
)

// FuzzLineEndings checks the smuggling defence's primitives: a message
// has a bare line ending iff it has a CR not followed by LF or an LF not
// preceded by CR, and normalizing leaves none and changes nothing else.
func FuzzLineEndings(f *testing.F) {
	for _, s := range []string{"a\r\nb\r\n", "a\nb", "a\rb", "\r", "\n", "\r\r\n", "x\r\n.\n", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		bare := false
		for i, c := range b {
			if c == '\n' && (i == 0 || b[i-1] != '\r') || c == '\r' && (i+1 == len(b) || b[i+1] != '\n') {
				bare = true
			}
		}
		if got := HasBareLineEnding(b); got != bare {
			t.Fatalf("HasBareLineEnding(%q) = %v, want %v", b, got, bare)
		}
		n := NormalizeLineEndings(b)
		if HasBareLineEnding(n) {
			t.Fatalf("NormalizeLineEndings(%q) = %q still has a bare line ending", b, n)
		}
		strip := func(x []byte) []byte {
			return bytes.ReplaceAll(bytes.ReplaceAll(x, []byte("\r"), nil), []byte("\n"), nil)
		}
		if !bytes.Equal(strip(n), strip(b)) {
			t.Fatalf("NormalizeLineEndings(%q) = %q changed more than line endings", b, n)
		}
	})
}

func TestAddressHelpers(t *testing.T) {
	for _, tc := range []struct{ addr, domain string }{
		{"bob@Dest.Test", "dest.test"}, {"a@b@c.test", "c.test"}, {"postmaster", ""}, {"", ""},
	} {
		if got := Domain(tc.addr); got != tc.domain {
			t.Errorf("Domain(%q) = %q, want %q", tc.addr, got, tc.domain)
		}
	}
	if NeedsSMTPUTF8("a@b.test", []string{"c@d.test"}) || !NeedsSMTPUTF8("a@b.test", []string{"jürgen@d.test"}) ||
		!NeedsSMTPUTF8("ü@b.test", nil) {
		t.Error("NeedsSMTPUTF8 wrong")
	}
	if got := OneLine("550 no\r\n such\tuser "); got != "550 no such user" {
		t.Errorf("OneLine = %q", got)
	}
	a := []byte("abc")
	if !SameBytes(a, a) || SameBytes(a, bytes.Clone(a)) {
		t.Error("SameBytes compares identity, not content")
	}
}
