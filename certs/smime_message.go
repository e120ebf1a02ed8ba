package certs

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"
)

// ErrSMIMEMalformedMessage is returned by BuildSMIME when the message's
// header cannot be split into fields (a line without a colon, a bare LF):
// we refuse to guess which part of it is private.
var ErrSMIMEMalformedMessage = errors.New("smime: malformed message header")

// SMIMEPlaceholderSubject is the outer Subject when the caller gives
// none: RFC 9788 §5.2.2's legacy placeholder.
const SMIMEPlaceholderSubject = "[...]"

// Where each header field of the original goes (RFC 9788 §2, §5.2).
const (
	smimeInside  = iota // only in the encrypted entity
	smimeBoth           // outside, and copied inside
	smimeOutside        // outside only: trace fields
	smimeSubject        // inside; a placeholder outside
	smimeDropped        // neither: MIME-Version is written anew outside
)

// smimeFieldPlace says where a field goes. Outside stay what routing,
// threading and display need — From, Sender, To, Cc, Reply-To, Date,
// Message-ID, In-Reply-To, References — and the trace fields (Received,
// Return-Path) that loop detection counts. Everything else, Content-*
// first, but also the Subject and what clients leak it through
// (Thread-Topic, X-*, Keywords, …), travels only inside.
func smimeFieldPlace(name string) int {
	switch strings.ToLower(name) {
	case "from", "sender", "to", "cc", "reply-to", "date", "message-id", "in-reply-to", "references":
		return smimeBoth
	case "received", "return-path":
		return smimeOutside
	case "subject":
		return smimeSubject
	case "mime-version":
		return smimeDropped
	}
	return smimeInside
}

// BuildSMIME turns a whole message (header and body, CRLF line ends, as
// spooled: tags already removed from the Subject) into the S/MIME message
// to send (RFC 8551 §3.3): an application/pkcs7-mime body, base64 in
// lines of 76 characters, that decrypts to the original MIME entity —
// its Content-* fields and body byte for byte — with the protected header
// fields in front (RFC 9788 header protection, hp="cipher"). The outer
// Subject becomes placeholderSubject (SMIMEPlaceholderSubject when
// empty).
//
// The entity is encrypted as it is read and the output buffer is sized
// once: a message costs about 2.4 times its size in memory with
// AES-CBC (the input and the base64 output), one more size with AES-GCM.
func BuildSMIME(msg []byte, recipients []*x509.Certificate, placeholderSubject string, opts SMIMEOptions) ([]byte, error) {
	subject, err := smimeSubjectField(placeholderSubject)
	if err != nil {
		return nil, err
	}
	fields, body, err := smimeSplitHeader(msg)
	if err != nil {
		return nil, err
	}

	var outer, inner bytes.Buffer
	hasSubject, hasContentType := false, false
	for _, f := range fields {
		place := smimeFieldPlace(f.name)
		if place == smimeBoth || place == smimeOutside {
			outer.Write(f.raw)
		}
		if place == smimeSubject && !hasSubject {
			outer.WriteString(subject)
			hasSubject = true
		}
		if place == smimeBoth || place == smimeInside || place == smimeSubject {
			if strings.EqualFold(f.name, "Content-Type") && !hasContentType {
				inner.Write(smimeMarkProtected(f.raw))
				hasContentType = true
				continue
			}
			inner.Write(f.raw)
		}
	}
	if !hasSubject {
		outer.WriteString(subject)
	}
	if !hasContentType {
		inner.WriteString("Content-Type: text/plain; charset=us-ascii; hp=\"cipher\"\r\n") // RFC 2045 §5.2's default
	}
	inner.WriteString("\r\n")
	entity := [][]byte{inner.Bytes(), body}

	smimeType := "enveloped-data"
	if opts.Cipher == SMIMEAES256GCM {
		smimeType = "authEnveloped-data" // RFC 8551 §3.2.2
	}
	outer.WriteString("MIME-Version: 1.0\r\n" +
		"Content-Type: application/pkcs7-mime; smime-type=" + smimeType + ";\r\n name=smime.p7m\r\n" +
		"Content-Disposition: attachment; filename=smime.p7m\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n")

	env, err := newSMIMEEnvelope(recipients, int64(inner.Len()+len(body)), opts)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	out.Grow(outer.Len() + smimeBase64Size(env.size()))
	out.Write(outer.Bytes())
	lines := &smimeBase64Lines{w: &out}
	if err := env.write(lines, entity); err != nil {
		return nil, err
	}
	if err := lines.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// smimeSubjectField is the outer Subject field, refusing a placeholder
// that would inject header lines and encoding one that is not ASCII
// (RFC 2047).
func smimeSubjectField(placeholder string) (string, error) {
	if placeholder == "" {
		placeholder = SMIMEPlaceholderSubject
	}
	for _, r := range placeholder {
		if r < 0x20 && r != '\t' || r == 0x7f {
			return "", fmt.Errorf("smime: placeholder subject %q has a control character", placeholder)
		}
	}
	return "Subject: " + mime.QEncoding.Encode("utf-8", placeholder) + "\r\n", nil
}

// smimeMarkProtected adds hp="cipher" (RFC 9788 §2.1.1) to a raw
// Content-Type field so that a client knows the header fields in the
// entity are the protected ones, to show instead of the outer ones.
// A field that already has an hp parameter is left as it is: a second
// one would make the field unparsable.
func smimeMarkProtected(raw []byte) []byte {
	if _, params, err := mime.ParseMediaType(string(raw[bytes.IndexByte(raw, ':')+1:])); err == nil && params["hp"] != "" {
		return raw
	}
	value := bytes.TrimRight(raw, " \t\r\n;")
	out := make([]byte, 0, len(value)+20)
	out = append(out, value...)
	return append(out, ";\r\n hp=\"cipher\"\r\n"...)
}

// smimeField is one header field as it was: raw covers the name, the
// value, its folded lines and the final CRLF.
type smimeField struct {
	name string
	raw  []byte
}

// smimeSplitHeader splits msg into its header fields and its body (what
// follows the empty line; nil when there is none).
func smimeSplitHeader(msg []byte) ([]smimeField, []byte, error) {
	var header, body []byte
	switch i := bytes.Index(msg, []byte("\r\n\r\n")); {
	case bytes.HasPrefix(msg, []byte("\r\n")):
		header, body = nil, msg[2:]
	case i >= 0:
		header, body = msg[:i+2], msg[i+4:]
	default:
		header = msg
		if len(header) > 0 && !bytes.HasSuffix(header, []byte("\r\n")) {
			header = append(header[:len(header):len(header)], '\r', '\n')
		}
	}
	var fields []smimeField
	line := 0
	for len(header) > 0 {
		line++
		end := bytes.Index(header, []byte("\r\n"))
		if end < 0 {
			return nil, nil, fmt.Errorf("%w: line %d has no CRLF", ErrSMIMEMalformedMessage, line)
		}
		text := header[:end]
		if bytes.ContainsAny(text, "\r\n") {
			return nil, nil, fmt.Errorf("%w: bare CR or LF in line %d", ErrSMIMEMalformedMessage, line)
		}
		if text[0] == ' ' || text[0] == '\t' {
			if len(fields) == 0 {
				return nil, nil, fmt.Errorf("%w: line %d continues no field", ErrSMIMEMalformedMessage, line)
			}
			last := &fields[len(fields)-1]
			last.raw = last.raw[:len(last.raw)+end+2] // raw aliases msg: extend over the folded line
		} else {
			colon := bytes.IndexByte(text, ':')
			if colon <= 0 || bytes.ContainsAny(text[:colon], " \t") {
				return nil, nil, fmt.Errorf("%w: line %d is not a header field", ErrSMIMEMalformedMessage, line)
			}
			fields = append(fields, smimeField{name: string(text[:colon]), raw: header[:end+2]})
		}
		header = header[end+2:]
	}
	return fields, body, nil
}

// smimeBase64Size is the length of n bytes in base64 lines of 76
// characters, each ended by CRLF.
func smimeBase64Size(n int64) int {
	chars := (n + 2) / 3 * 4
	lines := (chars + 75) / 76
	return int(chars + 2*lines)
}

// smimeBase64Lines writes base64 (RFC 2045 §6.8) in lines of 76
// characters with CRLF: whole 57-byte groups as they come, the rest on
// Close.
type smimeBase64Lines struct {
	w       io.Writer
	pending []byte
	line    [78]byte
}

const smimeBase64LineBytes = 57 // 76 characters

func (b *smimeBase64Lines) Write(p []byte) (int, error) {
	n := len(p)
	if len(b.pending) > 0 {
		take := min(smimeBase64LineBytes-len(b.pending), len(p))
		b.pending = append(b.pending, p[:take]...)
		p = p[take:]
		if len(b.pending) < smimeBase64LineBytes {
			return n, nil
		}
		if err := b.emit(b.pending); err != nil {
			return 0, err
		}
		b.pending = b.pending[:0]
	}
	for len(p) >= smimeBase64LineBytes {
		if err := b.emit(p[:smimeBase64LineBytes]); err != nil {
			return 0, err
		}
		p = p[smimeBase64LineBytes:]
	}
	b.pending = append(b.pending, p...)
	return n, nil
}

func (b *smimeBase64Lines) emit(group []byte) error {
	base64.StdEncoding.Encode(b.line[:], group)
	n := base64.StdEncoding.EncodedLen(len(group))
	b.line[n], b.line[n+1] = '\r', '\n'
	_, err := b.w.Write(b.line[:n+2])
	return err
}

// Close writes the last, shorter line.
func (b *smimeBase64Lines) Close() error {
	if len(b.pending) == 0 {
		return nil
	}
	err := b.emit(b.pending)
	b.pending = b.pending[:0]
	return err
}
