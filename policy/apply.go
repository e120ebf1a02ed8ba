package policy

import (
	"bufio"
	"bytes"
	"net/netip"
	"net/textproto"
	"sort"
	"strings"
)

// escalationHeader lets systems that submit through the API or SMTP (an
// EHR, say) ask for escalation; honoured only from trusted networks or
// authenticated clients, and always removed before the message leaves.
const escalationHeader = "X-Sealgate-Escalate"

// Session is what the session knows besides the message.
type Session struct {
	From       string
	Recipients []string
	AuthUser   string
	ClientIP   netip.Addr
	Trusted    bool // from a trusted network or authenticated
}

// Applied is a decision with the facts it was made on, as the live
// gateway applies it and as "sealgate policy explain" prints it.
type Applied struct {
	Decision
	Subject        string `json:"subject"`         // decoded, as the recipient will see it
	SubjectRaw     string `json:"subject_raw"`     // the header value as it will leave
	SubjectChanged bool   `json:"subject_changed"` // a tag was removed
	// Escalation is the X-Sealgate-Escalate value honoured ("" when
	// none was) and SubjectUnread why the Subject could not be searched
	// for tags: with Tags, what the sender asked for, which the message
	// as spooled no longer shows.
	Escalation    string `json:"escalation,omitempty"`
	SubjectUnread string `json:"subject_unread,omitempty"`
}

// Prior is what a message asked of the policy when it first arrived
// (Applied's Tags, Escalation and SubjectUnread): deciding a spooled
// message again must count them, since its Subject and header no longer
// carry them.
type Prior struct {
	Tags          []string
	Escalation    string
	SubjectUnread string
}

// Apply decides what happens to msg (the message as the client sent
// it) and returns the message as it must be spooled: tags removed from
// the Subject, the escalation header removed, the rules' header changes
// applied. It is the one code path of the gateway and of explain.
func Apply(e *Engine, in Session, msg []byte) (Applied, []byte) {
	return apply(e, in, Prior{}, msg)
}

// Reapply decides a spooled message again under e (queue reapply): as
// Apply, counting what it asked for on arrival (prior). The message
// returned is what the rules would make of it; the caller decides
// whether content changes apply to mail already accepted.
func Reapply(e *Engine, in Session, prior Prior, msg []byte) (Applied, []byte) {
	return apply(e, in, prior, msg)
}

func apply(e *Engine, in Session, prior Prior, msg []byte) (Applied, []byte) {
	fields, headerEnd := headerFields(msg)
	hdr := parseHeader(msg[:headerEnd])
	res := Applied{}

	var subjectField *headerField
	for i := range fields {
		if strings.EqualFold(fields[i].name, "Subject") {
			subjectField = &fields[i]
			break
		}
	}
	rawSubject := ""
	if subjectField != nil {
		rawSubject = strings.TrimSuffix(string(msg[subjectField.valueStart:subjectField.end]), "\r\n")
	}
	found, stripped, tagErr := StripTags(rawSubject, e.Tags())
	res.SubjectRaw, res.SubjectChanged = strings.TrimLeft(stripped, " \t"), stripped != rawSubject
	res.Subject = decodeHeaderValue(stripped)

	for _, t := range prior.Tags {
		if !containsString(found, t) {
			found = append(found, t)
		}
	}
	pin := Input{
		From: in.From, Recipients: in.Recipients, AuthUser: in.AuthUser, ClientIP: in.ClientIP,
		Subject: res.Subject, Header: hdr, Size: int64(len(msg)), Tags: found,
		SubjectScanError: prior.SubjectUnread, HeaderEscalation: prior.Escalation,
	}
	if tagErr != nil {
		pin.SubjectScanError = tagErr.Error()
	}
	if in.Trusted {
		if v := strings.ToLower(strings.TrimSpace(textproto.MIMEHeader(hdr).Get(escalationHeader))); v == "escrow" || v == "encrypt" {
			pin.HeaderEscalation = v
		}
	}
	res.Escalation, res.SubjectUnread = pin.HeaderEscalation, pin.SubjectScanError
	pin.Forwarded, pin.ForwardedBy = AutoForwarded(hdr)
	if need, limit := e.NeedsBody(); need {
		scan := scanBody(msg, limit)
		pin.Text, pin.HasAttachments, pin.BodyScanError = scan.text, scan.attachments, scan.incomplete
	}
	res.Decision = e.Decide(pin)

	// Rebuild the header: byte for byte except what policy changes.
	remove := map[string]bool{strings.ToLower(escalationHeader): true}
	for _, h := range res.RemoveHeaders {
		remove[strings.ToLower(h)] = true
	}
	rewrite := res.SubjectChanged || len(res.AddHeaders) > 0
	for i := range fields {
		rewrite = rewrite || remove[strings.ToLower(fields[i].name)]
	}
	if !rewrite {
		return res, msg // the usual case: nothing to change, nothing copied
	}
	var out bytes.Buffer
	out.Grow(len(msg) + 128)
	for i := range fields {
		f := &fields[i]
		switch {
		case remove[strings.ToLower(f.name)]:
		case f == subjectField && res.SubjectChanged:
			out.Write(msg[f.start:f.valueStart])
			out.WriteString(stripped)
			out.WriteString("\r\n")
		default:
			out.Write(msg[f.start:f.end])
		}
	}
	names := make([]string, 0, len(res.AddHeaders))
	for k := range res.AddHeaders {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		out.WriteString(k + ": " + res.AddHeaders[k] + "\r\n")
	}
	out.Write(msg[headerEnd:])
	return res, out.Bytes()
}

// headerField locates one field of the header block: [start, end) covers
// the whole field including folded lines and the final CRLF; valueStart
// is just after the colon.
type headerField struct {
	name                   string
	start, valueStart, end int
}

// headerFields splits the header block of msg (which uses CRLF, as the
// smuggling defence guarantees) into fields, and returns where the header
// ends (the blank line, or len(msg) for a message without body).
func headerFields(msg []byte) ([]headerField, int) {
	var fields []headerField
	pos := 0
	for pos < len(msg) {
		eol := bytes.Index(msg[pos:], []byte("\r\n"))
		lineEnd := len(msg)
		if eol >= 0 {
			lineEnd = pos + eol + 2
		}
		line := msg[pos:lineEnd]
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return fields, pos
		}
		if (line[0] == ' ' || line[0] == '\t') && len(fields) > 0 {
			fields[len(fields)-1].end = lineEnd
		} else if colon := bytes.IndexByte(line, ':'); colon > 0 {
			fields = append(fields, headerField{name: string(bytes.TrimSpace(line[:colon])), start: pos, valueStart: pos + colon + 1, end: lineEnd})
		} else {
			// Not a header line: the header ends here (RFC 5322 has no
			// such thing; keep it as body rather than drop it).
			return fields, pos
		}
		pos = lineEnd
	}
	return fields, len(msg)
}

// parseHeader returns the fields with decoded, unfolded values.
func parseHeader(block []byte) map[string][]string {
	r := textproto.NewReader(bufio.NewReader(bytes.NewReader(append(append([]byte{}, block...), '\r', '\n'))))
	h, _ := r.ReadMIMEHeader() // a malformed line ends the header; what came before counts
	out := make(map[string][]string, len(h))
	for k, vs := range h {
		for _, v := range vs {
			out[k] = append(out[k], decodeHeaderValue(v))
		}
	}
	return out
}

func decodeHeaderValue(v string) string {
	v = strings.Join(strings.Fields(v), " ")
	if dec, err := newWordDecoder().DecodeHeader(v); err == nil {
		return dec
	}
	return v
}
