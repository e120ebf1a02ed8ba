package portal

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // the charsets mail clients use
	gomail "github.com/emersion/go-message/mail"
	"github.com/microcosm-cc/bluemonday"
	"golang.org/x/net/html"
)

// maxShownText bounds the text or HTML shown of one message (the
// attachments are downloads and not bounded here).
const maxShownText = 4 << 20

// view is an escrowed message as the portal shows it.
type view struct {
	From, To, Cc, Date, Subject string
	Text                        string // the text body, when there is no HTML
	HTML                        string // sanitised; safe to insert
	RemoteBlocked               bool   // the HTML asked for images, frames or other remote content
	Attachments                 []attachment
	MessageID                   string
}

type attachment struct {
	Index       int // position among the attachments, for its URL
	Name        string
	ContentType string
	Size        int
	data        []byte
}

// readMessage parses an escrowed message for display. A part it cannot
// decode is offered as a download rather than dropped.
func readMessage(raw []byte) (*view, error) {
	r, err := gomail.CreateReader(bytes.NewReader(raw))
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		return nil, err
	}
	if r == nil {
		return nil, errors.New("unreadable message")
	}
	defer r.Close()
	v := &view{}
	h := r.Header
	v.From = addressList(h, "From")
	v.To = addressList(h, "To")
	v.Cc = addressList(h, "Cc")
	v.Date = h.Get("Date")
	if d, err := h.Date(); err == nil {
		v.Date = d.Format("Mon, 2 Jan 2006 15:04 MST")
	}
	v.Subject, _ = h.Subject()
	v.MessageID = h.Get("Message-Id")
	var text, htmlBody string
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil && p == nil {
			if message.IsUnknownCharset(err) || message.IsUnknownEncoding(err) {
				continue
			}
			break
		}
		switch ph := p.Header.(type) {
		case *gomail.InlineHeader:
			ct, _, _ := ph.ContentType()
			body, _ := io.ReadAll(io.LimitReader(p.Body, maxShownText))
			switch {
			case ct == "text/plain" && text == "":
				text = string(body)
			case ct == "text/html" && htmlBody == "":
				htmlBody = string(body)
			default:
				v.addAttachment(ph.Get("Content-Type"), "", body)
			}
		case *gomail.AttachmentHeader:
			name, _ := ph.Filename()
			body, _ := io.ReadAll(p.Body)
			v.addAttachment(ph.Get("Content-Type"), name, body)
		}
	}
	if htmlBody != "" {
		v.HTML, v.RemoteBlocked = sanitize(htmlBody)
	} else {
		v.Text = text
	}
	return v, nil
}

func (v *view) addAttachment(ctype, name string, data []byte) {
	mt, _, err := mime.ParseMediaType(ctype)
	if err != nil || mt == "" {
		mt = "application/octet-stream"
	}
	if name == "" {
		name = fmt.Sprintf("attachment-%d", len(v.Attachments)+1)
		if exts, _ := mime.ExtensionsByType(mt); len(exts) > 0 {
			name += exts[0]
		}
	}
	v.Attachments = append(v.Attachments, attachment{Index: len(v.Attachments), Name: name, ContentType: mt, Size: len(data), data: data})
}

func addressList(h gomail.Header, key string) string {
	list, err := h.AddressList(key)
	if err != nil || len(list) == 0 {
		s, _ := h.Text(key)
		return s
	}
	out := make([]string, len(list))
	for i, a := range list {
		if a.Name != "" {
			out[i] = a.Name + " <" + a.Address + ">"
		} else {
			out[i] = a.Address
		}
	}
	return strings.Join(out, ", ")
}

// htmlPolicy keeps the structure and text of mail HTML and nothing that
// runs or fetches: no scripts, styles, event handlers, forms, images,
// frames or objects; links only to http, https and mailto, opened
// without a referrer. Images and frames are dropped rather than
// proxied: remote ones would tell the sender when and where the message
// was read; inline ones are among the attachments.
var htmlPolicy = func() *bluemonday.Policy {
	p := bluemonday.NewPolicy()
	p.AllowURLSchemes("http", "https", "mailto")
	p.RequireParseableURLs(true)
	p.AllowAttrs("href").OnElements("a")
	p.RequireNoReferrerOnLinks(true)
	p.AddTargetBlankToFullyQualifiedLinks(true)
	p.AllowAttrs("title", "dir", "lang").Globally()
	p.AllowAttrs("colspan", "rowspan").OnElements("td", "th")
	p.AllowElements("p", "br", "div", "span", "b", "i", "u", "s", "strong", "em", "small", "sub", "sup", "mark",
		"h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "dl", "dt", "dd", "blockquote", "pre", "code", "hr",
		"table", "thead", "tbody", "tfoot", "tr", "td", "th", "caption", "center", "font", "abbr", "cite", "q")
	return p
}()

// remoteTags are elements that load something from elsewhere.
var remoteTags = map[string]bool{"img": true, "iframe": true, "frame": true, "object": true, "embed": true,
	"video": true, "audio": true, "source": true, "link": true, "picture": true, "image": true, "svg": true}

// sanitize returns the safe form of a message's HTML and whether
// remote content (images, frames, objects, CSS urls) was removed.
func sanitize(in string) (string, bool) {
	remote := false
	z := html.NewTokenizer(strings.NewReader(in))
	for !remote {
		tt := z.Next()
		if tt == html.ErrorToken {
			break
		}
		if tt != html.StartTagToken && tt != html.SelfClosingTagToken {
			continue
		}
		name, hasAttr := z.TagName()
		if remoteTags[string(name)] {
			remote = true
		}
		for hasAttr {
			var k, val []byte
			k, val, hasAttr = z.TagAttr()
			if (string(k) == "background" || string(k) == "style" && bytes.Contains(bytes.ToLower(val), []byte("url("))) && len(val) > 0 {
				remote = true
			}
		}
	}
	return htmlPolicy.Sanitize(in), remote
}
