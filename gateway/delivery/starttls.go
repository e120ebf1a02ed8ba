package delivery

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"
)

// maxPreludeBytes bounds what the server may send before TLS starts.
const maxPreludeBytes = 64 << 10

// StartTLSIfOffered runs the plaintext opening of an outbound session
// (RFC 3207 §4): it reads the greeting, says EHLO, and when the server
// offers STARTTLS and tlsWanted, sends STARTTLS and reads the 220 that
// precedes the handshake. It reports whether the caller must now start
// TLS on conn.
func StartTLSIfOffered(conn net.Conn, ehloName string, tlsWanted bool) (bool, error) {
	// A hostile server must not make us buffer an endless reply: the whole
	// prelude (greeting, EHLO reply, STARTTLS reply) is read through a
	// bounded reader.
	r := textproto.NewReader(bufio.NewReaderSize(io.LimitReader(conn, maxPreludeBytes), 4096))
	w := textproto.NewWriter(bufio.NewWriter(conn))
	tp := &textproto.Conn{Reader: *r, Writer: *w}
	if _, _, err := tp.ReadResponse(220); err != nil {
		return false, fmt.Errorf("greeting: %w", err)
	}
	if err := tp.PrintfLine("EHLO %s", ehloName); err != nil {
		return false, err
	}
	_, msg, err := tp.ReadResponse(250)
	if err != nil {
		// No ESMTP: no STARTTLS; the session's HELO fallback follows.
		var te *textproto.Error
		if errors.As(err, &te) {
			return false, nil
		}
		return false, fmt.Errorf("EHLO: %w", err)
	}
	offered := false
	for _, line := range strings.Split(msg, "\n")[1:] {
		if strings.EqualFold(strings.TrimSpace(line), "STARTTLS") {
			offered = true
		}
	}
	if !offered || !tlsWanted {
		return false, nil
	}
	if err := tp.PrintfLine("STARTTLS"); err != nil {
		return false, err
	}
	if _, _, err := tp.ReadResponse(220); err != nil {
		return false, fmt.Errorf("STARTTLS: %w", err)
	}
	return true, nil
}
