// Package mailtext holds the small text helpers of mail handling that
// several rooms of the gateway share: address parts, ASCII checks, line
// endings and one-line diagnostics. It knows nothing about SMTP sessions,
// the spool or policy; every function is pure.
package mailtext

import (
	"bytes"
	"strings"
)

// OneLine keeps a diagnostic on a single header or reply line: every run
// of whitespace (including CR and LF) becomes one space.
func OneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// IsASCII reports whether s has only 7-bit characters.
func IsASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// NeedsSMTPUTF8 reports whether an envelope with this sender and these
// recipients can only be relayed with SMTPUTF8 (RFC 6531).
func NeedsSMTPUTF8(from string, rcpts []string) bool {
	if !IsASCII(from) {
		return true
	}
	for _, r := range rcpts {
		if !IsASCII(r) {
			return true
		}
	}
	return false
}

// Domain returns the domain part of an address in its canonical form
// (CanonicalDomain; lower case when it is not a valid domain), "" when it
// has none. Addresses spooled before intake canonicalised them get the
// same TLS policy, history and grouping as new ones.
func Domain(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return ""
	}
	if d, err := CanonicalDomain(addr[at+1:]); err == nil {
		return d
	}
	return strings.ToLower(addr[at+1:])
}

// HasBareLineEnding reports whether b has a CR not followed by LF or an
// LF not preceded by CR.
func HasBareLineEnding(b []byte) bool {
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '\r':
			if i+1 >= len(b) || b[i+1] != '\n' {
				return true
			}
			i++ // the LF of this CRLF
		case '\n':
			return true // an LF not consumed as part of a CRLF
		}
	}
	return false
}

// NormalizeLineEndings rewrites every bare CR and bare LF in b to CRLF.
// CRLF pairs are kept; "\r\r\n" becomes "\r\n\r\n". b itself is returned
// when it has nothing to rewrite.
func NormalizeLineEndings(b []byte) []byte {
	if !HasBareLineEnding(b) {
		return b
	}
	out := bytes.NewBuffer(make([]byte, 0, len(b)+len(b)/32))
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '\r':
			out.WriteString("\r\n")
			if i+1 < len(b) && b[i+1] == '\n' {
				i++
			}
		case '\n':
			out.WriteString("\r\n")
		default:
			out.WriteByte(b[i])
		}
	}
	return out.Bytes()
}

// SameBytes reports whether a and b are the same slice (not just equal
// content): transforms hand back their input when they change nothing,
// and callers use this to skip a copy.
func SameBytes(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}
