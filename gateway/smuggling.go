package gateway

import "bytes"

// SMTP smuggling defence.
//
// SMTP ends a message at <CRLF>.<CRLF>. Some servers also accept other
// end-of-data forms, such as <LF>.<LF> or <LF>.<CRLF> (Postfix before
// 3.8.4, CVE-2023-51764; Sendmail, CVE-2023-51765; Exchange Online before
// its fix), as SEC Consult's "SMTP smuggling" research showed in December
// 2023. An attacker who can submit through a relay that passes bare LFs
// on can embed a second message after such a fake terminator: the relay
// sees one message, the next server sees two, and the smuggled one
// inherits the relay's SPF, DKIM and reputation — spoofed mail from the
// tenant's own domain.
//
// go-smtp only ends DATA at <CRLF>.<CRLF> and un-dot-stuffs, so a smuggled
// "<LF>.<LF>" reaches us as bare LFs inside the body. We refuse any bare
// CR or bare LF (the default, as Postfix's smtpd_forbid_bare_newline
// does), or, when configured, rewrite each one to CRLF so that nothing
// downstream can read a line ending differently from us. Either way, no
// bare line ending leaves sealgate.

// hasBareLineEnding reports whether b has a CR not followed by LF or an
// LF not preceded by CR.
func hasBareLineEnding(b []byte) bool {
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

// normalizeLineEndings rewrites every bare CR and bare LF in b to CRLF.
// CRLF pairs are kept; "\r\r\n" becomes "\r\n\r\n".
func normalizeLineEndings(b []byte) []byte {
	if !hasBareLineEnding(b) {
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
