package report

import (
	"strings"
	"unicode/utf8"

	"github.com/sealgate/sealgate/internal/mailtext"
)

// Line limits of RFC 5322 §2.1.1: a line must not exceed 998 octets
// (without its CRLF) and should not exceed 78.
const (
	softLineLimit = 78
	hardLineLimit = 998
)

// maxDiagnostic bounds the remote reply a DSN repeats: enough for any
// useful multi-line reply, small enough that a hostile server cannot
// make us mail back kilobytes of its text.
const maxDiagnostic = 2000

// diagnostic is a remote reply or error made fit for a DSN: one line
// (whitespace runs become one space), at most maxDiagnostic octets, cut
// at a UTF-8 boundary and marked when cut.
func diagnostic(s string) string {
	s = mailtext.OneLine(s)
	if len(s) <= maxDiagnostic {
		return s
	}
	cut := maxDiagnostic
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + " [truncated]"
}

// foldLine folds one logical line (a header field, or a line of text)
// into lines of at most soft octets where it has whitespace to break
// before, and never more than hardLineLimit: breaking before existing
// whitespace is RFC 5322 folding and unfolds to the same text. A run
// without whitespace longer than the hard limit is broken anyway, which
// adds one space to it when unfolded. The result has no trailing CRLF.
func foldLine(line string, soft int) string {
	if len(line) <= soft {
		return line
	}
	var out strings.Builder
	rest := line
	for len(rest) > soft {
		// The last whitespace within the soft limit that leaves something
		// other than whitespace on this line.
		i := strings.LastIndexAny(rest[:soft+1], " \t")
		if i <= 0 || strings.TrimLeft(rest[:i], " \t") == "" {
			i = -1
			if j := strings.IndexAny(rest[soft:min(len(rest), hardLineLimit+1)], " \t"); j >= 0 {
				i = soft + j
			}
		}
		if i <= 0 {
			if len(rest) <= hardLineLimit {
				break
			}
			i = hardLineLimit
			for !utf8.RuneStart(rest[i]) {
				i--
			}
			out.WriteString(rest[:i])
			out.WriteString("\r\n")
			rest = " " + rest[i:]
			continue
		}
		out.WriteString(rest[:i])
		out.WriteString("\r\n")
		rest = rest[i:]
	}
	out.WriteString(rest)
	return out.String()
}

// foldLongLines folds every line of a CRLF header block that is longer
// than the hard limit; shorter lines are left as they were.
func foldLongLines(block []byte) []byte {
	lines := strings.Split(string(block), "\r\n")
	changed := false
	for i, l := range lines {
		if len(l) > hardLineLimit {
			lines[i] = foldLine(l, hardLineLimit)
			changed = true
		}
	}
	if !changed {
		return block
	}
	return []byte(strings.Join(lines, "\r\n"))
}
