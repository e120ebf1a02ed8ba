package policy

import (
	"bytes"
	"io"
	"mime"
	"strings"

	"github.com/emersion/go-message"
)

// maxScanParts bounds the MIME walk on hostile messages.
const maxScanParts = 1000

// scanBody reads the text parts of msg (decoded from their transfer
// encoding; not attachments) up to limit bytes in all, for content rules,
// and says whether the message has attachments. The body is already in
// memory (one per session); what is bounded is how much of it the rules'
// regular expressions get to see, and the MIME walk itself.
func scanBody(msg []byte, limit int64) (text string, attachments bool) {
	e, _ := message.Read(bytes.NewReader(msg))
	if e == nil {
		return "", false // unparseable: no text, no attachments known
	}
	var b strings.Builder
	parts := 0
	_ = e.Walk(func(_ []int, part *message.Entity, err error) error {
		parts++
		if err != nil && !message.IsUnknownCharset(err) || parts > maxScanParts {
			return io.EOF // stop the walk; keep what was read
		}
		ct, _, _ := part.Header.ContentType()
		if strings.HasPrefix(ct, "multipart/") {
			return nil
		}
		disp, dparams, _ := mime.ParseMediaType(part.Header.Get("Content-Disposition"))
		_, cparams, _ := part.Header.ContentType()
		if disp == "attachment" || dparams["filename"] != "" || cparams["name"] != "" {
			attachments = true
			return nil
		}
		if ct != "" && !strings.HasPrefix(ct, "text/") {
			attachments = true // an inline image, a PDF: content, but not text
			return nil
		}
		if remaining := limit - int64(b.Len()); remaining > 0 {
			data, _ := io.ReadAll(io.LimitReader(part.Body, remaining))
			b.Write(data)
			b.WriteByte('\n')
		}
		return nil
	})
	return b.String(), attachments
}
