package mailtext

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Errors of address parsing; callers answer them with 501 5.1.3 (or
// 553 5.1.3) and tests check them with errors.Is.
var (
	// ErrBadAddress: the address does not follow RFC 5321 §4.1.2.
	ErrBadAddress = errors.New("bad address syntax")
	// ErrControlChar: the address holds NUL or another control
	// character, which no hop may be given.
	ErrControlChar = errors.New("control character in address")
	// ErrBadDomain: the domain is not a valid host name (RFC 5321
	// §4.1.2 Domain, RFC 5890 IDNA).
	ErrBadDomain = errors.New("bad domain")
)

// Limits of RFC 5321 §4.5.3.1.
const (
	maxLocalPart = 64
	maxDomain    = 255
	maxPath      = 256
)

// idnaProfile turns U-labels into A-labels for lookups: the IDNA2008
// lookup profile, as mail clients and resolvers use it.
var idnaProfile = idna.New(idna.MapForLookup(), idna.BidiRule(), idna.Transitional(false))

// CanonicalDomain returns the one form of a domain that every lookup
// uses (TLS policy, TLS history, MTA-STS, DANE, policy rules, grouping):
// lower case, no trailing dot, A-labels (xn--…) for internationalised
// labels. An address literal ("[192.0.2.1]", "[IPv6:2001:db8::1]") is
// returned in its canonical written form.
func CanonicalDomain(d string) (string, error) {
	if strings.HasPrefix(d, "[") {
		return canonicalLiteral(d)
	}
	d = strings.TrimSuffix(d, ".")
	if d == "" {
		return "", fmt.Errorf("%w: empty", ErrBadDomain)
	}
	for i := 0; i < len(d); i++ {
		if d[i] < 0x20 || d[i] == 0x7f {
			return "", ErrControlChar
		}
	}
	if !utf8.ValidString(d) {
		return "", fmt.Errorf("%w: not UTF-8", ErrBadDomain)
	}
	a, err := idnaProfile.ToASCII(d)
	if err == nil {
		// An A-label must read back: refuse what only encodes one way.
		_, err = idnaProfile.ToUnicode(a)
	}
	if err != nil {
		return "", fmt.Errorf("%w: %q: %v", ErrBadDomain, d, err)
	}
	a = strings.ToLower(a)
	if len(a) > maxDomain {
		return "", fmt.Errorf("%w: longer than %d octets", ErrBadDomain, maxDomain)
	}
	for _, label := range strings.Split(a, ".") {
		if !validLabel(label) {
			return "", fmt.Errorf("%w: %q", ErrBadDomain, d)
		}
	}
	return a, nil
}

// validLabel: Let-dig [Ldh-str], at most 63 octets (RFC 5321 §4.1.2).
func validLabel(l string) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

func canonicalLiteral(d string) (string, error) {
	if !strings.HasSuffix(d, "]") {
		return "", fmt.Errorf("%w: %q", ErrBadDomain, d)
	}
	inner := d[1 : len(d)-1]
	v6 := false
	if len(inner) > 5 && strings.EqualFold(inner[:5], "IPv6:") {
		inner, v6 = inner[5:], true
	}
	ip, err := netip.ParseAddr(inner)
	if err != nil || ip.Zone() != "" || ip.Is6() != v6 || ip.Is4In6() {
		return "", fmt.Errorf("%w: address literal %q", ErrBadDomain, d)
	}
	if v6 {
		return "[IPv6:" + ip.String() + "]", nil
	}
	return "[" + ip.String() + "]", nil
}

// CanonicalAddress parses a mailbox as it appears inside the angle
// brackets of MAIL FROM or RCPT TO (RFC 5321 §4.1.2: Dot-string or
// Quoted-string local part, "@", domain or address literal; a source
// route "@a,@b:" before it is accepted and dropped, §4.1.2) and returns
// it in the one form sealgate keeps and sends on: the local part as
// written when it is a Dot-string, otherwise re-quoted so that it reads
// the same to every parser (quotes and backslashes escaped, nothing else);
// the domain as CanonicalDomain makes it. NUL and other control
// characters are refused. A bare local part without "@" (RCPT
// TO:<postmaster>) is returned unchanged with domain "".
func CanonicalAddress(s string) (addr, domain string, err error) {
	if strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return "", "", ErrControlChar // C0, DEL and C1 (U+0080–U+009F) alike
	}
	if strings.HasPrefix(s, "@") { // source route
		i := strings.IndexByte(s, ':')
		if i < 0 {
			return "", "", ErrBadAddress
		}
		s = s[i+1:]
	}
	if len(s) > maxPath {
		return "", "", fmt.Errorf("%w: longer than %d octets", ErrBadAddress, maxPath)
	}
	local, rest, err := splitLocal(s)
	if err != nil {
		return "", "", err
	}
	if rest == "" {
		return quoteLocal(local), "", nil
	}
	if rest[0] != '@' {
		return "", "", ErrBadAddress
	}
	if domain, err = CanonicalDomain(rest[1:]); err != nil {
		return "", "", err
	}
	q := quoteLocal(local)
	if len(q) > maxLocalPart && utf8.RuneCountInString(local) > maxLocalPart {
		return "", "", fmt.Errorf("%w: local part longer than %d octets", ErrBadAddress, maxLocalPart)
	}
	return q + "@" + domain, domain, nil
}

// splitLocal reads the local part at the start of s (unquoting a
// Quoted-string) and returns it with what follows.
func splitLocal(s string) (local, rest string, err error) {
	if s == "" {
		return "", "", ErrBadAddress
	}
	if s[0] != '"' {
		at := strings.LastIndexByte(s, '@')
		if at < 0 {
			at = len(s)
		}
		local = s[:at]
		if !isDotString(local) {
			for i := 0; i < len(local); i++ {
				if local[i] < 0x20 || local[i] == 0x7f {
					return "", "", ErrControlChar
				}
			}
			return "", "", fmt.Errorf("%w: local part %q", ErrBadAddress, local)
		}
		return local, s[at:], nil
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c < 0x20 || c == 0x7f:
			return "", "", ErrControlChar
		case c == '\\':
			if i+1 >= len(s) {
				return "", "", ErrBadAddress
			}
			i++
			if s[i] < 0x20 || s[i] == 0x7f {
				return "", "", ErrControlChar
			}
			b.WriteByte(s[i])
		case c == '"':
			return b.String(), s[i+1:], nil
		default:
			b.WriteByte(c)
		}
	}
	return "", "", fmt.Errorf("%w: unterminated quoted local part", ErrBadAddress)
}

// isDotString: Atom *("." Atom), atext per RFC 5322 §3.2.3 plus UTF-8
// (RFC 6531).
func isDotString(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 {
			continue
		}
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-/=?^_`{|}~.", c) >= 0) {
			return false
		}
	}
	return utf8.ValidString(s)
}

// quoteLocal writes a local part so that every parser reads it back the
// same: as is when it is a Dot-string, else as a Quoted-string.
func quoteLocal(l string) string {
	if isDotString(l) {
		return l
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(l); i++ {
		if l[i] == '"' || l[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(l[i])
	}
	b.WriteByte('"')
	return b.String()
}
