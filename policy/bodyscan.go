package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"strconv"
	"strings"

	"github.com/emersion/go-message"
	// Its init sets message.CharsetReader, so that text parts in any
	// charset the x/text tables know reach the content rules as UTF-8.
	_ "github.com/emersion/go-message/charset"

	"github.com/sealgate/sealgate/internal/mailtext"
)

// The MIME walk for content and attachment rules (RFC 2045, 2046). It
// reads the text parts the recipient will read — decoded from their
// transfer encoding and charset, inline message/rfc822 parts included —
// up to a byte limit, and notes whether the message carries attachments
// (whose content it does not read). It is bounded in parts and depth.
//
// It fails closed: whatever it cannot read (a transfer encoding or
// charset it does not know, a broken boundary, a Content-Type it cannot
// parse, too deep or too many parts, text past the limit) is reported as
// the reason the scan is incomplete, and the walk goes on past a broken
// part wherever the structure allows, so a malformed first part cannot
// hide a second part. The engine then treats the rules the unread part
// could satisfy as matching (or applies on_scan_error).

const (
	// maxScanParts bounds the MIME walk on hostile messages.
	maxScanParts = 1000
	// maxScanDepth bounds nesting; real mail (a forward of a forward of
	// a signed message) stays well under it.
	maxScanDepth = 16
	// maxScanProblems bounds how many problems are spelt out.
	maxScanProblems = 3
)

// bodyScan is what the walk read.
type bodyScan struct {
	text        string
	attachments bool
	// incomplete says why not all text was read; "" when it was.
	incomplete string
}

// scanBody reads the text parts of msg up to limit bytes in all, for
// content rules, and says whether the message has attachments and what
// it could not read. The body is already in memory (one per session);
// what is bounded is how much of it the rules' regular expressions get
// to see, and the walk itself.
func scanBody(msg []byte, limit int64) bodyScan {
	s := &scanner{limit: limit}
	root, err := message.Read(bytes.NewReader(msg))
	if root == nil {
		s.problem("header", "unreadable: %v", err)
	} else {
		s.entity(root, err, "", 0)
	}
	res := bodyScan{text: s.text.String(), attachments: s.attachments}
	if len(s.problems) > 0 {
		res.incomplete = strings.Join(s.problems, "; ")
		if s.more > 0 {
			res.incomplete += fmt.Sprintf(" (and %d more)", s.more)
		}
	}
	return res
}

type scanner struct {
	limit       int64
	text        strings.Builder
	attachments bool
	parts       int
	stopped     bool // too many parts: nothing more is read
	truncated   bool // text past the limit was not read
	problems    []string
	more        int
}

// problem records what could not be read, where ("part 2.1").
func (s *scanner) problem(where, format string, args ...any) {
	if len(s.problems) == maxScanProblems {
		s.more++
		return
	}
	p := mailtext.OneLine(where + ": " + fmt.Sprintf(format, args...))
	if len(p) > 200 { // the words come from the message: keep them short
		p = p[:200] + "…"
	}
	s.problems = append(s.problems, p)
}

func partName(path string) string {
	if path == "" {
		return "body"
	}
	return "part " + path
}

// entity reads one part; err is what go-message said about its transfer
// encoding or charset.
func (s *scanner) entity(e *message.Entity, err error, path string, depth int) {
	if s.stopped {
		return
	}
	s.parts++
	if s.parts > maxScanParts {
		s.problem(partName(path), "more than %d MIME parts", maxScanParts)
		s.stopped = true
		return
	}
	where := partName(path)
	ct, params, ctErr := e.Header.ContentType()
	if ctErr != nil {
		// The boundary, the charset or the type itself may be what the
		// sender wanted hidden: read what can be read, as text.
		s.problem(where, "Content-Type unreadable: %v", ctErr)
		ct, params = strings.ToLower(strings.TrimSpace(strings.SplitN(ct, ";", 2)[0])), nil
		if strings.HasPrefix(ct, "multipart/") {
			return // no boundary to find the parts by
		}
	}
	switch {
	case strings.HasPrefix(ct, "multipart/"):
		s.multipart(e, params, path, depth)
		return
	case isAttachment(e, params):
		s.attachments = true
		return
	case ct == "message/rfc822" || ct == "message/global":
		// A forwarded message shown inline: its text is read too.
		s.embedded(e, err, path, depth)
		return
	case ct != "" && !strings.HasPrefix(ct, "text/"):
		s.attachments = true // an inline image, a PDF: content, but not text
		return
	}
	if err != nil {
		s.problem(where, "cannot decode: %v", err) // read raw below, for what it is worth
	}
	s.readText(e.Body, where)
}

func isAttachment(e *message.Entity, params map[string]string) bool {
	disp, dparams, _ := mime.ParseMediaType(e.Header.Get("Content-Disposition"))
	return strings.EqualFold(disp, "attachment") || dparams["filename"] != "" || params["name"] != ""
}

func (s *scanner) multipart(e *message.Entity, params map[string]string, path string, depth int) {
	where := partName(path)
	if depth >= maxScanDepth {
		s.problem(where, "MIME parts nested more than %d deep", maxScanDepth)
		return
	}
	if params["boundary"] == "" {
		s.problem(where, "multipart without a boundary")
		return
	}
	mr := e.MultipartReader()
	for i := 1; !s.stopped; i++ {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return
		}
		child := strconv.Itoa(i)
		if path != "" {
			child = path + "." + child
		}
		if part == nil {
			// The structure is lost from here on inside this multipart;
			// an enclosing one resumes at its own next boundary.
			s.problem(partName(child), "broken MIME structure: %v", err)
			return
		}
		s.entity(part, err, child, depth+1)
	}
}

func (s *scanner) embedded(e *message.Entity, err error, path string, depth int) {
	where := partName(path)
	if err != nil {
		s.problem(where, "cannot decode: %v", err)
	}
	if depth >= maxScanDepth {
		s.problem(where, "MIME parts nested more than %d deep", maxScanDepth)
		return
	}
	inner, ierr := message.Read(e.Body)
	if inner == nil {
		s.problem(where, "embedded message unreadable: %v", ierr)
		return
	}
	s.entity(inner, ierr, path, depth+1)
}

// readText appends a text part's decoded content, up to the limit.
func (s *scanner) readText(body io.Reader, where string) {
	remaining := s.limit - int64(s.text.Len())
	if remaining <= 0 {
		s.overLimit(where)
		return
	}
	data, err := io.ReadAll(io.LimitReader(body, remaining+1))
	if int64(len(data)) > remaining {
		data = data[:remaining]
		s.overLimit(where)
	} else if err != nil {
		s.problem(where, "cannot decode: %v", err)
	}
	s.text.Write(data)
	s.text.WriteByte('\n')
}

func (s *scanner) overLimit(where string) {
	if !s.truncated {
		s.truncated = true
		s.problem(where, "text past content_scan_bytes (%d) not read", s.limit)
	}
}
