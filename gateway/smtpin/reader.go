package smtpin

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"time"
)

// The strict reader. Every byte a client sends passes through it, above
// TLS: a command line ends at CRLF and nowhere else, and the content of
// DATA ends at CRLF "." CRLF and nowhere else (RFC 5321 §4.1.1.4,
// §2.3.8). This is what go-smtp's reader could not promise (it takes a
// bare LF for a line end, and after a DATA timeout it reads the rest of
// the body as commands), and why the protocol is spoken here.

// Errors of the command channel. Each ends the connection: after them
// the client and we may no longer agree on where a line ends.
var (
	errLineTooLong    = errors.New("command line too long")
	errBareInCommand  = errors.New("bare CR or LF in a command line")
	errEarlyTalker    = errors.New("client talked before the greeting")
	errContentBefore  = errors.New("message content before the 354 reply")
	errPipelinedTLS   = errors.New("commands pipelined after STARTTLS")
	errBadChunkLength = errors.New("bad BDAT chunk size")
)

// deadlineConn sets a fresh read deadline before every read: the idle
// timeout from now, but never past the hard cap of the current phase.
// A slow but steady sender is never cut off; a stalled one is.
type deadlineConn struct {
	net.Conn
	idle time.Duration
	cap  time.Time // zero: no cap
}

func (d *deadlineConn) Read(p []byte) (int, error) {
	dl := time.Time{}
	if d.idle > 0 {
		dl = time.Now().Add(d.idle)
	}
	if !d.cap.IsZero() && (dl.IsZero() || d.cap.Before(dl)) {
		dl = d.cap
	}
	d.Conn.SetReadDeadline(dl)
	return d.Conn.Read(p)
}

// readCommand reads one command line without its CRLF.
func readCommand(br *bufio.Reader, max int) (string, error) {
	var long []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			if len(long)+len(chunk) > max {
				return "", errLineTooLong
			}
			long = append(long, chunk...)
			continue
		}
		if err != nil {
			return "", err
		}
		line := chunk
		if long != nil {
			line = append(long, chunk...)
		}
		if len(line) > max+2 {
			return "", errLineTooLong
		}
		if len(line) < 2 || line[len(line)-2] != '\r' {
			return "", errBareInCommand
		}
		body := line[:len(line)-2]
		if bytes.IndexByte(body, '\r') >= 0 {
			return "", errBareInCommand
		}
		return string(body), nil
	}
}

// contentFlags are what reading a message found wrong with it; the
// message is refused for them after the whole content has been read, so
// that the session stays in step.
type contentFlags struct {
	bareLineEnding bool // a CR not before LF, or an LF not after CR
	nul            bool
	longLine       bool  // a line over the line length limit
	tooBig         bool  // over the size limit; the rest was discarded
	noMemory       bool  // the node's byte budget ran out; the rest was discarded
	size           int64 // octets received (after un-dot-stuffing)
}

// bodySink takes message content as it is read: it counts, checks the
// size limit and the node's byte budget, and keeps what it may.
type bodySink struct {
	dst     *bytes.Buffer
	limit   int64
	reserve func(total int) bool // asks the budget for room for total bytes
	flags   contentFlags
}

func (s *bodySink) write(p []byte) {
	s.flags.size += int64(len(p))
	if s.flags.tooBig || s.flags.noMemory {
		return
	}
	if s.limit > 0 && s.flags.size > s.limit {
		s.flags.tooBig = true
		return
	}
	if s.reserve != nil && !s.reserve(s.dst.Len()+len(p)) {
		s.flags.noMemory = true
		return
	}
	s.dst.Write(p)
}

// readData reads DATA content up to the terminating CRLF "." CRLF,
// undoing dot-stuffing, into sink. Only a CRLF starts a line: "." after a
// bare LF is content, never the end (the SMTP smuggling variants
// <LF>.<LF>, <LF>.<CRLF>, <CR>.<CR>… all stay inside the message, which
// is then refused for its bare line ending). An error is a transport
// failure or timeout: the caller must close the connection, never read
// on as commands.
func readData(br *bufio.Reader, sink *bodySink, maxLine int) error {
	atLineStart := true // just after a CRLF (or at the start)
	midLine := 0        // octets of the current line read so far
	pendingCR := false  // the last chunk ended in CR
	for {
		chunk, err := br.ReadSlice('\n')
		full := err == bufio.ErrBufferFull
		if err != nil && !full {
			return err
		}
		if pendingCR {
			pendingCR = false
			if chunk[0] == '\n' {
				// The CR that ended the previous chunk and this LF are
				// one CRLF: the line ends here.
				sink.write(chunk[:1])
				chunk = chunk[1:]
				atLineStart, midLine = true, 0
				if len(chunk) == 0 {
					continue
				}
			} else {
				sink.flags.bareLineEnding = true
			}
		}
		if atLineStart && midLine == 0 {
			if !full && len(chunk) == 3 && chunk[0] == '.' && chunk[1] == '\r' {
				return nil // CRLF "." CRLF
			}
			if chunk[0] == '.' {
				chunk = chunk[1:] // RFC 5321 §4.5.2
				midLine++
			}
		}
		midLine += len(chunk)
		if maxLine > 0 && midLine > maxLine+2 {
			sink.flags.longLine = true
		}
		if bytes.IndexByte(chunk, 0) >= 0 {
			sink.flags.nul = true
		}
		if full {
			// A long line: no LF yet. A CR at the very end may be the
			// first half of a CRLF split across reads.
			body := chunk
			if n := len(body); n > 0 && body[n-1] == '\r' {
				body, pendingCR = body[:n-1], true
			}
			if bytes.IndexByte(body, '\r') >= 0 {
				sink.flags.bareLineEnding = true
			}
			sink.write(chunk)
			atLineStart = false
			continue
		}
		n := len(chunk)
		crlf := n >= 2 && chunk[n-2] == '\r'
		inner := chunk[:n-1]
		if crlf {
			inner = chunk[:n-2]
		} else {
			sink.flags.bareLineEnding = true
		}
		if bytes.IndexByte(inner, '\r') >= 0 {
			sink.flags.bareLineEnding = true
		}
		sink.write(chunk)
		atLineStart, midLine = crlf, 0
		if !crlf {
			midLine = 1 // a bare LF does not start a line
		}
	}
}

// hasLongLine reports whether b has a line over max octets, counted as
// readData counts them (a line ends at LF), for BDAT content.
func hasLongLine(b []byte, max int) bool {
	for len(b) > 0 {
		n := bytes.IndexByte(b, '\n') + 1
		if n == 0 {
			n = len(b)
		}
		if n > max+2 {
			return true
		}
		b = b[n:]
	}
	return false
}

// readChunk reads exactly n octets of BDAT content into sink (RFC 3030).
func readChunk(br *bufio.Reader, sink *bodySink, n int64) error {
	buf := make([]byte, 32<<10)
	for n > 0 {
		k := min(int64(len(buf)), n)
		if _, err := io.ReadFull(br, buf[:k]); err != nil {
			return err
		}
		if bytes.IndexByte(buf[:k], 0) >= 0 {
			sink.flags.nul = true
		}
		sink.write(buf[:k])
		n -= k
	}
	return nil
}
