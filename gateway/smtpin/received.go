package smtpin

import (
	"bytes"
	"fmt"
	"strings"
	"time"
)

// maxHops is the most Received headers a message may carry before we
// take it for a loop (RFC 5321 §6.3 suggests at least 100 for the
// counter's threshold; Postfix uses 50 and so do we).
const maxHops = 50

// receivedHeader builds the trace header we prepend (RFC 5321 §4.4, with
// the protocol names of RFC 3848): the client's EHLO name and address,
// our name, whether TLS and AUTH were used and with which TLS version and
// cipher, the queue ID the message will have (so that a recipient's
// copy leads the admin to the record), and the recipient when there is only one (naming several would
// disclose Bcc recipients to each other).
func receivedHeader(t receivedFacts) []byte {
	proto := "ESMTP"
	if t.TLSVersion != "" {
		proto += "S"
	}
	if t.AuthUser != "" {
		proto += "A"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Received: from %s ([%s])\r\n\tby %s (sealgate) with %s", sanitizeTrace(t.Helo), t.ClientIP, t.Hostname, proto)
	if t.TLSVersion != "" {
		fmt.Fprintf(&b, "\r\n\t(version=%s cipher=%s)", t.TLSVersion, t.Cipher)
	}
	if t.ID != "" {
		fmt.Fprintf(&b, "\r\n\tid %s", t.ID)
	}
	if len(t.Recipients) == 1 {
		fmt.Fprintf(&b, "\r\n\tfor <%s>", sanitizeTrace(t.Recipients[0]))
	}
	fmt.Fprintf(&b, ";\r\n\t%s\r\n", t.Time.Format(time.RFC1123Z))
	return []byte(b.String())
}

type receivedFacts struct {
	Helo, ClientIP, Hostname string
	ID                       string // the queue ID
	TLSVersion, Cipher       string
	AuthUser                 string
	Recipients               []string
	Time                     time.Time
}

// sanitizeTrace keeps client-supplied text from breaking the header.
func sanitizeTrace(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x21 || r >= 0x7f || r == '(' || r == ')' || r == ';' {
			return '_'
		}
		return r
	}, s)
}

// countHops counts the Received header fields in the header block of msg.
func countHops(msg []byte) int {
	end := bytes.Index(msg, []byte("\r\n\r\n"))
	if end < 0 {
		end = len(msg)
	}
	n := 0
	for line := range bytes.SplitSeq(msg[:end], []byte("\r\n")) {
		if len(line) >= 9 && bytes.EqualFold(line[:9], []byte("received:")) {
			n++
		}
	}
	return n
}
