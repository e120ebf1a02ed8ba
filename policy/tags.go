package policy

import (
	"mime"
	"regexp"
	"strings"

	"github.com/sealgate/sealgate/internal/mailtext"
)

// Escalation tags in the Subject (what an Outlook or Gmail user types,
// "[secure]"). Subjects with non-ASCII text arrive as RFC 2047 encoded
// words ("=?utf-8?B?…?="), often folded over several lines; a tag may sit
// in plain text or inside an encoded word. The tag is removed with the
// whitespace around it, and everything else of the Subject is kept byte
// for byte: untouched encoded words stay as they were, and only a word
// that held a tag is re-encoded (same charset family, same B or Q
// encoding). When a tag straddles two encoded words, the whole Subject is
// re-encoded once as UTF-8, the one case where bytes change beyond the
// tag.

// maxTagRemovals bounds the removal loop on hostile subjects.
const maxTagRemovals = 32

var encodedWord = regexp.MustCompile(`=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=`)

// StripTags finds every configured tag in a raw Subject value and returns
// the tags found (as configured) and the value without them.
func StripTags(raw string, tags []string) (found []string, stripped string) {
	stripped = raw
	for _, tag := range tags {
		for range maxTagRemovals {
			out, ok := removeTagOnce(stripped, tag)
			if !ok {
				break
			}
			stripped = out
			if !containsString(found, tag) {
				found = append(found, tag)
			}
		}
	}
	return found, stripped
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// removeTagOnce removes the first occurrence of tag from a raw value.
func removeTagOnce(raw, tag string) (string, bool) {
	// Plain text between encoded words.
	locs := encodedWord.FindAllStringIndex(raw, -1)
	prev := 0
	for _, loc := range append(locs, []int{len(raw), len(raw)}) {
		if i := indexFoldASCII(raw[prev:loc[0]], tag); i >= 0 {
			return cutWithSpace(raw, prev+i, prev+i+len(tag)), true
		}
		if loc[0] == len(raw) {
			break
		}
		// Inside one encoded word.
		word := raw[loc[0]:loc[1]]
		if text, charset, enc, ok := decodeWord(word); ok {
			if i := indexFoldASCII(text, tag); i >= 0 {
				rest := cutWithSpace(text, i, i+len(tag))
				if strings.TrimSpace(rest) == "" {
					return cutWithSpace(raw, loc[0], loc[1]), true
				}
				return raw[:loc[0]] + encodeWord(rest, charset, enc) + raw[loc[1]:], true
			}
		}
		prev = loc[1]
	}
	// Across encoded words: decode the whole value and re-encode it.
	dec := new(mime.WordDecoder)
	text, err := dec.DecodeHeader(raw)
	if err != nil || indexFoldASCII(text, tag) < 0 {
		return raw, false
	}
	i := indexFoldASCII(text, tag)
	text = strings.Join(strings.Fields(cutWithSpace(text, i, i+len(tag))), " ")
	return mime.BEncoding.Encode("utf-8", text), true
}

// decodeWord decodes one encoded word it can re-encode faithfully
// (UTF-8 and US-ASCII; ISO-8859-1 is re-encoded as UTF-8).
func decodeWord(word string) (text, charset string, enc mime.WordEncoder, ok bool) {
	parts := strings.SplitN(word[2:len(word)-2], "?", 3)
	if len(parts) != 3 {
		return "", "", 0, false
	}
	charset = strings.ToLower(parts[0])
	switch charset {
	case "utf-8", "us-ascii", "iso-8859-1":
	default:
		return "", "", 0, false // leave words in other charsets alone
	}
	enc = mime.BEncoding
	if strings.EqualFold(parts[1], "q") {
		enc = mime.QEncoding
	}
	text, err := new(mime.WordDecoder).Decode(word)
	if err != nil {
		return "", "", 0, false
	}
	return text, charset, enc, true
}

func encodeWord(text, charset string, enc mime.WordEncoder) string {
	if charset != "utf-8" && mailtext.IsASCII(text) {
		return enc.Encode(charset, text)
	}
	return enc.Encode("utf-8", text)
}

// cutWithSpace removes s[i:j] and the whitespace on one side of it, so
// "a [secure] b" becomes "a b", "[secure] b" becomes "b" and "a [secure]"
// becomes "a". Folding (CRLF followed by a space) counts as whitespace.
func cutWithSpace(s string, i, j int) string {
	for j < len(s) && isFWS(s[j]) {
		j++
	}
	if j == len(s) {
		for i > 0 && isFWS(s[i-1]) {
			i--
		}
	}
	return s[:i] + s[j:]
}

func isFWS(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// indexFoldASCII finds tag in s ignoring ASCII case; tags are ASCII, and
// folding only ASCII keeps byte offsets in s exact.
func indexFoldASCII(s, tag string) int {
	n := len(tag)
	for i := 0; i+n <= len(s); i++ {
		match := true
		for k := 0; k < n; k++ {
			a, b := s[i+k], tag[k]
			if 'A' <= a && a <= 'Z' {
				a += 'a' - 'A'
			}
			if 'A' <= b && b <= 'Z' {
				b += 'a' - 'A'
			}
			if a != b {
				match = false
				break
			}
		}
		if match {
			return i
		}
	}
	return -1
}
