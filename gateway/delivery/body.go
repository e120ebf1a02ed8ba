package delivery

// The message body on the wire: DATA content with dot-stuffing (RFC 5321
// §4.5.2) written in runs rather than a byte at a time, the same body
// made whole for BDAT (RFC 3030), and the 8-bit test behind
// BODY=8BITMIME (RFC 6152).

import (
	"bytes"
	"encoding/binary"
	"io"
)

var (
	crlf    = []byte("\r\n")
	dotCRLF = []byte(".\r\n")
	dot     = []byte(".")
	cr      = []byte("\r")
	lf      = []byte("\n")
)

// dotWriter writes a message body as DATA content: a "." that begins a
// line gets another in front of it, a bare LF goes out as CRLF (there is
// never a bare LF on the wire), and Close ends an unterminated last line
// with CRLF before the terminating ".". A bare CR passes unchanged, as
// with net/textproto's writer (the intake refuses one anyway).
//
// It looks at the body only where a line ends: bytes.IndexByte finds
// each LF and everything between two insertions goes to w in one Write.
// Its state carries over from one Write to the next, so a body may
// arrive in pieces split anywhere.
type dotWriter struct {
	w         io.Writer
	midLine   bool // the last byte written did not end a line
	lastWasCR bool // the last byte written was CR
}

func newDotWriter(w io.Writer) *dotWriter { return &dotWriter{w: w} }

func (d *dotWriter) Write(p []byte) (int, error) {
	start := 0 // the run of p not yet written
	for i := 0; i < len(p); {
		if !d.midLine {
			d.midLine = true
			if p[i] == '.' {
				if err := d.insert(p[start:i], dot); err != nil {
					return 0, err
				}
				start = i
			}
		}
		j := bytes.IndexByte(p[i:], '\n')
		if j < 0 {
			break
		}
		lfAt := i + j
		prevCR := d.lastWasCR
		if lfAt > 0 {
			prevCR = p[lfAt-1] == '\r'
		}
		if !prevCR {
			if err := d.insert(p[start:lfAt], cr); err != nil {
				return 0, err
			}
			start = lfAt
		}
		d.midLine = false
		i = lfAt + 1
	}
	if len(p) > 0 {
		d.lastWasCR = p[len(p)-1] == '\r'
	}
	if start < len(p) {
		if _, err := d.w.Write(p[start:]); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// insert writes run, then extra.
func (d *dotWriter) insert(run, extra []byte) error {
	if len(run) > 0 {
		if _, err := d.w.Write(run); err != nil {
			return err
		}
	}
	_, err := d.w.Write(extra)
	return err
}

// Close ends the last line and writes the terminating ".". It does not
// close w.
func (d *dotWriter) Close() error {
	if d.midLine {
		end := crlf
		if d.lastWasCR {
			end = lf
		}
		if _, err := d.w.Write(end); err != nil {
			return err
		}
	}
	_, err := d.w.Write(dotCRLF)
	return err
}

// wholeLines returns body as BDAT sends it: every line ending CRLF,
// the last one included. A body that already is (the usual case: the
// intake stores CRLF) comes back as it is, without a copy.
func wholeLines(body []byte) []byte {
	if len(body) == 0 || bytes.HasSuffix(body, crlf) && !hasBareLF(body) {
		return body
	}
	out := make([]byte, 0, len(body)+len(body)/64+2)
	for len(body) > 0 {
		j := bytes.IndexByte(body, '\n')
		if j < 0 {
			out = append(out, body...)
			break
		}
		out = append(out, body[:j]...)
		if len(out) == 0 || out[len(out)-1] != '\r' {
			out = append(out, '\r')
		}
		out = append(out, '\n')
		body = body[j+1:]
	}
	switch {
	case bytes.HasSuffix(out, lf):
	case bytes.HasSuffix(out, cr):
		out = append(out, '\n')
	default:
		out = append(out, crlf...)
	}
	return out
}

// hasBareLF reports whether an LF in b has no CR before it.
func hasBareLF(b []byte) bool {
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return false
		}
		if i+j == 0 || b[i+j-1] != '\r' {
			return true
		}
		i += j + 1
	}
}

// has8bit reports whether any byte of b has its high bit set; it reads
// eight bytes at a time, as it runs over every message sent.
func has8bit(b []byte) bool {
	const high = 0x8080808080808080
	for len(b) >= 32 {
		if (binary.LittleEndian.Uint64(b)|binary.LittleEndian.Uint64(b[8:])|
			binary.LittleEndian.Uint64(b[16:])|binary.LittleEndian.Uint64(b[24:]))&high != 0 {
			return true
		}
		b = b[32:]
	}
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}
