package delivery

// The client end of one SMTP session after the plaintext prelude: EHLO
// (HELO when the server knows no ESMTP), AUTH for the smarthost, RSET
// before a reused connection's next transaction, QUIT. Replies are read
// with bounded lines and line counts, and every command has its own
// deadline. The transaction itself is in transaction.go.

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/internal/mailtext"
)

const (
	// maxReplyLine bounds one reply line (RFC 5321 §4.5.3.1.5 allows 512
	// octets); a longer line is a protocol error, not a buffer to grow.
	maxReplyLine = 4096
	// maxReplyLines bounds the lines of one multi-line reply (an EHLO
	// reply lists a few dozen extensions at most).
	maxReplyLines = 256
	// writeBufferSize is the command and body buffer; body runs longer
	// than it go to the connection directly.
	writeBufferSize = 32 << 10
)

// session speaks SMTP on an open connection. It is not safe for
// concurrent use; the deliverer holds it for one transaction at a time.
type session struct {
	conn    net.Conn
	r       *bufio.Reader
	w       *bufio.Writer
	timeout time.Duration // per command; per block while sending a body
	ext     map[string]string
}

func newSession(conn net.Conn, timeout time.Duration) *session {
	s := &session{conn: conn, timeout: timeout}
	s.r = bufio.NewReaderSize(conn, maxReplyLine)
	s.w = bufio.NewWriterSize(timedWriter{s}, writeBufferSize)
	return s
}

// timedWriter gives every write to the connection a fresh deadline, so
// that a body of any size is bounded per block, not as a whole.
type timedWriter struct{ s *session }

func (t timedWriter) Write(p []byte) (int, error) {
	t.s.conn.SetWriteDeadline(time.Now().Add(t.s.timeout))
	return t.s.conn.Write(p)
}

// extension reports whether the server offered ext in its EHLO reply,
// and its parameters.
func (s *session) extension(ext string) (bool, string) {
	v, ok := s.ext[ext]
	return ok, v
}

// reply is one server reply: the code and the text of its lines joined
// by "\n", without the codes.
type reply struct {
	code int
	msg  string
}

// maxRecordedReply bounds the reply text kept in a record: a server's
// words are worth keeping, a megabyte of them is not.
const maxRecordedReply = 512

// text is the reply as the server wrote it, on one line: the code, then
// its lines (enhanced status code and all) joined by spaces, cut at
// maxRecordedReply.
func (r reply) text() string {
	t := mailtext.OneLine(strconv.Itoa(r.code) + " " + r.msg)
	if len(t) > maxRecordedReply {
		t = strings.ToValidUTF8(t[:maxRecordedReply], "") + "…"
	}
	return t
}

// status is the reply's RFC 3463 enhanced status code ("2.0.0"), or the
// class's generic one when the server gave none.
func (r reply) status() string {
	if ec := r.err().EnhancedCode; ec != smtp.EnhancedCodeNotSet && ec != smtp.NoEnhancedCode {
		return fmt.Sprintf("%d.%d.%d", ec[0], ec[1], ec[2])
	}
	return strconv.Itoa(r.code/100) + ".0.0"
}

// err is the reply as an *smtp.SMTPError, the enhanced status code
// (RFC 2034) parsed out of the text as go-smtp's client does.
func (r reply) err() *smtp.SMTPError {
	e := &smtp.SMTPError{Code: r.code, Message: r.msg}
	first, rest, ok := strings.Cut(r.msg, " ")
	if !ok {
		return e
	}
	parts := strings.Split(first, ".")
	if len(parts) != 3 {
		return e
	}
	var ec smtp.EnhancedCode
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return e
		}
		ec[i] = n
	}
	e.EnhancedCode = ec
	e.Message = strings.ReplaceAll(rest, "\n"+first+" ", "\n")
	return e
}

// expect returns nil when the reply's code starts with want (250, or 25
// for any 25x), else the reply as an error.
func (r reply) expect(want int) error {
	c := r.code
	for w := want; w < 100; w *= 10 {
		c /= 10
	}
	if c == want {
		return nil
	}
	return r.err()
}

// readReply reads one reply under a fresh deadline.
func (s *session) readReply() (reply, error) {
	s.conn.SetReadDeadline(time.Now().Add(s.timeout))
	var r reply
	var msg strings.Builder
	for n := 0; ; n++ {
		line, err := s.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			return r, errors.New("reply line too long")
		}
		if err != nil {
			return r, err
		}
		line = trimEOL(line)
		if len(line) < 3 || (len(line) > 3 && line[3] != ' ' && line[3] != '-') {
			return r, fmt.Errorf("malformed reply %q", line)
		}
		code, err := strconv.Atoi(string(line[:3]))
		if err != nil || code < 100 || code > 599 {
			return r, fmt.Errorf("malformed reply code %q", line[:3])
		}
		if n == 0 {
			r.code = code
		} else if code != r.code {
			return r, fmt.Errorf("reply code changed from %d to %d within one reply", r.code, code)
		} else {
			msg.WriteByte('\n')
		}
		if len(line) > 4 {
			msg.Write(line[4:])
		}
		if len(line) == 3 || line[3] == ' ' {
			break
		}
		if n+1 >= maxReplyLines {
			return r, errors.New("reply has too many lines")
		}
	}
	r.msg = msg.String()
	return r, nil
}

func trimEOL(b []byte) []byte {
	b = b[:len(b)-1]
	if len(b) > 0 && b[len(b)-1] == '\r' {
		b = b[:len(b)-1]
	}
	return b
}

// command writes one command line into the buffer without sending it;
// a line that holds CR or LF is refused, never written.
func (s *session) command(line string) error {
	if strings.ContainsAny(line, "\r\n") {
		return errors.New("command line holds CR or LF")
	}
	s.w.WriteString(line)
	_, err := s.w.WriteString("\r\n")
	return err
}

// exchange sends one command and reads its reply; err is a transport
// or protocol error only.
func (s *session) exchange(line string) (reply, error) {
	if err := s.command(line); err != nil {
		return reply{}, err
	}
	if err := s.w.Flush(); err != nil {
		return reply{}, err
	}
	return s.readReply()
}

// cmd is exchange that also turns a reply whose code does not start
// with want into an *smtp.SMTPError.
func (s *session) cmd(want int, line string) (reply, error) {
	r, err := s.exchange(line)
	if err != nil {
		return r, err
	}
	return r, r.expect(want)
}

// greet reads the server's greeting (after implicit TLS; on a STARTTLS
// connection the prelude read it).
func (s *session) greet() error {
	r, err := s.readReply()
	if err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	return r.expect(220)
}

// hello says EHLO and records the extensions offered, falling back to
// HELO when the server does not know EHLO (500 or 502).
func (s *session) hello(name string) error {
	r, err := s.cmd(250, "EHLO "+name)
	var se *smtp.SMTPError
	if errors.As(err, &se) && (se.Code == 500 || se.Code == 502) {
		s.ext = map[string]string{}
		_, err = s.cmd(250, "HELO "+name)
		return err
	}
	if err != nil {
		return err
	}
	lines := strings.Split(r.msg, "\n")[1:]
	s.ext = make(map[string]string, len(lines))
	for _, l := range lines {
		k, v, _ := strings.Cut(l, " ")
		s.ext[strings.ToUpper(k)] = v
	}
	return nil
}

// auth runs a SASL exchange (RFC 4954).
func (s *session) auth(a sasl.Client) error {
	mech, resp, err := a.Start()
	if err != nil {
		return err
	}
	line := "AUTH " + mech
	if len(resp) > 0 {
		line += " " + base64.StdEncoding.EncodeToString(resp)
	} else if resp != nil {
		line += " ="
	}
	for {
		r, err := s.exchange(line)
		if err != nil {
			return err
		}
		switch r.code {
		case 235:
			return nil
		case 334:
			challenge, err := base64.StdEncoding.DecodeString(r.msg)
			if err == nil {
				resp, err = a.Next(challenge)
			}
			if err != nil {
				s.exchange("*") // abort the exchange
				return err
			}
			line = base64.StdEncoding.EncodeToString(resp)
		default:
			return r.err()
		}
	}
}

// reset aborts any transaction (RSET); on a pooled connection it also
// proves the server is still there.
func (s *session) reset() error {
	_, err := s.cmd(250, "RSET")
	return err
}

// quit says goodbye and closes the connection.
func (s *session) quit() error {
	_, err := s.cmd(221, "QUIT")
	s.conn.Close()
	return err
}

func (s *session) close() error { return s.conn.Close() }
