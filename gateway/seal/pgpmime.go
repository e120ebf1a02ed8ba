package seal

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"io"
	"mime"
	"strings"

	"github.com/sealgate/sealgate/internal/mailtext"
)

// field is one header field as it arrived: name and the raw bytes,
// folding and the final CRLF included.
type field struct {
	name string // lower case
	raw  []byte
}

// splitHeader cuts a message (CRLF line endings) into its header fields
// and its body. A message without an empty line is all header.
func splitHeader(msg []byte) ([]field, []byte) {
	var fields []field
	rest := msg
	for len(rest) > 0 {
		if bytes.HasPrefix(rest, []byte("\r\n")) {
			return fields, rest[2:]
		}
		end := 0
		for {
			i := bytes.Index(rest[end:], []byte("\r\n"))
			if i < 0 {
				end = len(rest)
				break
			}
			end += i + 2
			if end >= len(rest) || (rest[end] != ' ' && rest[end] != '\t') {
				break
			}
		}
		raw := rest[:end]
		name, _, _ := bytes.Cut(raw, []byte(":"))
		fields = append(fields, field{name: strings.ToLower(strings.TrimSpace(string(name))), raw: raw})
		rest = rest[end:]
	}
	return fields, nil
}

// protectedCopies are the fields the encrypted entity repeats, so that a
// client shows what the sender wrote (and can tell it was not changed).
var protectedCopies = map[string]bool{
	"from": true, "to": true, "cc": true, "reply-to": true, "date": true, "message-id": true,
	"in-reply-to": true, "references": true,
}

// innerOnly are the fields that describe the content or repeat the
// Subject: inside the encryption and nowhere outside.
func innerOnly(name string) bool {
	return strings.HasPrefix(name, "content-") || name == "mime-version" || name == "subject" || name == "thread-topic"
}

// pgpMIME builds the PGP/MIME form of msg: the outer header with
// placeholder as its Subject, and the original entity, with its
// protected headers, encrypted by encrypt (which writes armored OpenPGP
// to the writer it is given and returns the plaintext side).
func pgpMIME(msg []byte, placeholder string, encrypt func(io.Writer) (io.WriteCloser, error)) ([]byte, error) {
	fields, body := splitHeader(msg)

	var inner bytes.Buffer
	hasContentType := false
	for _, f := range fields {
		switch {
		case f.name == "content-type":
			hasContentType = true
			inner.Write(bytes.TrimSuffix(f.raw, []byte("\r\n")))
			inner.WriteString(";\r\n protected-headers=\"v1\"\r\n")
		case f.name == "mime-version":
		case innerOnly(f.name), protectedCopies[f.name]:
			inner.Write(f.raw)
		}
	}
	if !hasContentType {
		inner.WriteString("Content-Type: text/plain; charset=us-ascii; protected-headers=\"v1\"\r\n")
	}
	inner.WriteString("\r\n")

	var b [12]byte
	rand.Read(b[:])
	boundary := "sealgate-pgp-" + hex.EncodeToString(b[:])
	var out bytes.Buffer
	// The armored form is about 4/3 of the ciphertext plus a line end
	// every 64 characters: sized once, the buffer is never copied to grow.
	out.Grow(len(msg) - len(body) + armoredSize(len(inner.Bytes())+len(body)) + 1024)
	subjectDone := false
	writeSubject := func() {
		out.WriteString("Subject: " + encodeSubject(placeholder) + "\r\n")
		subjectDone = true
	}
	for _, f := range fields {
		if f.name == "subject" && !subjectDone {
			writeSubject()
		}
		if !innerOnly(f.name) {
			out.Write(f.raw)
		}
	}
	if !subjectDone {
		writeSubject()
	}
	out.WriteString("MIME-Version: 1.0\r\n")
	out.WriteString("Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\r\n boundary=\"" + boundary + "\"\r\n")
	out.WriteString("\r\nThis is an OpenPGP/MIME encrypted message (RFC 3156).\r\n")
	out.WriteString("--" + boundary + "\r\n")
	out.WriteString("Content-Type: application/pgp-encrypted\r\nContent-Description: PGP/MIME version identification\r\n\r\nVersion: 1\r\n\r\n")
	out.WriteString("--" + boundary + "\r\n")
	out.WriteString("Content-Type: application/octet-stream; name=\"encrypted.asc\"\r\n" +
		"Content-Description: OpenPGP encrypted message\r\n" +
		"Content-Disposition: inline; filename=\"encrypted.asc\"\r\n\r\n")
	w, err := encrypt(crlfWriter{&out})
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(inner.Bytes()); err != nil {
		return nil, err
	}
	if _, err := w.Write(body); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	out.WriteString("\r\n--" + boundary + "--\r\n")
	return out.Bytes(), nil
}

// encodeSubject writes the placeholder as a header value: as is when it
// is ASCII, else as an RFC 2047 encoded word.
func encodeSubject(s string) string {
	if mailtext.IsASCII(s) {
		return s
	}
	return mime.QEncoding.Encode("utf-8", s)
}

// armoredSize bounds the ASCII-armored size of an OpenPGP message
// carrying plain bytes: packet overhead (partial lengths, session keys
// for a few recipients, the MDC), base64, a CRLF per 64 characters, the
// armor lines.
func armoredSize(plain int) int {
	packets := plain + plain/512 + 4096
	b64 := (packets + 2) / 3 * 4
	return b64 + b64/64*2 + 256
}

// crlfWriter turns the LF line ends of ASCII armor into CRLF, as SMTP
// requires (and our own smuggling defence would insist on), without
// copying what it writes.
type crlfWriter struct{ w io.Writer }

var crlf = []byte("\r\n")

func (c crlfWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		line, rest, found := bytes.Cut(p, []byte("\n"))
		if _, err := c.w.Write(line); err != nil {
			return n, err
		}
		n += len(line)
		if found {
			if _, err := c.w.Write(crlf); err != nil {
				return n, err
			}
			n++
		}
		p = rest
	}
	return n, nil
}
