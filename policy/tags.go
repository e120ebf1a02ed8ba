package policy

import (
	"errors"
	"fmt"
	"mime"
	"regexp"
	"strings"

	"github.com/emersion/go-message/charset"
)

// Escalation tags in the Subject (what an Outlook or Gmail user types,
// "[secure]"). Subjects with non-ASCII text arrive as RFC 2047 encoded
// words ("=?utf-8?B?…?=", "=?windows-1252?Q?…?=", "=?ISO-2022-JP?B?…?="),
// often folded over several lines; a tag may sit in plain text or inside
// an encoded word of any charset the mail clients emit. The tag is
// removed with the whitespace around it, and everything else of the
// Subject is kept byte for byte: untouched encoded words stay as they
// were, in their own charset. A word that held a tag is re-encoded as
// UTF-8 (same B or Q encoding): UTF-8 holds every character any charset
// can, so nothing is lost, whereas encoding back into a legacy charset
// can fail (a replacement character, a stateful ISO-2022-JP escape) and
// would leave the choice between keeping the tag and garbling the text.
// When a tag straddles two encoded words, the whole Subject is re-encoded
// once as UTF-8, the one case where bytes change beyond the tag.
//
// The work is bounded: a Subject longer than maxSubjectBytes is not
// searched, and at most maxTagRemovals tags are cut out. Neither bound
// hides a tag: the caller treats an unsearched Subject as tagged, and a
// tag still readable after the last removal is reported found.

const (
	// maxSubjectBytes is the longest raw Subject searched for tags.
	// Outlook stops at 255 characters and Gmail's subjects are of the
	// same order; even in CJK text, B-encoded and folded, that is under
	// 2 KiB.
	maxSubjectBytes = 16 << 10
	// maxTagRemovals bounds the removal loop on hostile subjects.
	maxTagRemovals = 32
)

var (
	// ErrSubjectTooLong is returned by StripTags for a Subject longer
	// than it searches; the Subject is returned unchanged.
	ErrSubjectTooLong = errors.New("Subject longer than the 16 KiB searched for tags")
	// ErrSubjectUndecodable is returned by StripTags when an encoded word
	// cannot be decoded (unknown charset, broken base64 or Q): a tag could
	// hide in it. The Subject is returned unchanged.
	ErrSubjectUndecodable = errors.New("Subject has an encoded word that cannot be decoded")
)

var encodedWord = regexp.MustCompile(`=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=`)

// newWordDecoder decodes RFC 2047 words in every charset the x/text
// tables know (windows-125x, ISO-8859-x, ISO-2022-JP, GB18030, Big5,
// Shift_JIS, KOI8-R, …).
func newWordDecoder() *mime.WordDecoder {
	return &mime.WordDecoder{CharsetReader: charset.Reader}
}

// StripTags finds every configured tag in a raw Subject value and returns
// the tags found (as configured) and the value without them. It fails
// (ErrSubjectTooLong, ErrSubjectUndecodable) rather than answer "no tag"
// for a Subject it could not search; the value is then returned as it
// came and no tag is reported.
func StripTags(raw string, tags []string) (found []string, stripped string, err error) {
	if len(raw) > maxSubjectBytes {
		return nil, raw, fmt.Errorf("%w (%d bytes)", ErrSubjectTooLong, len(raw))
	}
	dec := newWordDecoder()
	for _, word := range encodedWord.FindAllString(raw, -1) {
		if _, err := dec.Decode(word); err != nil {
			return nil, raw, fmt.Errorf("%w: %s", ErrSubjectUndecodable, err)
		}
	}
	if _, err := dec.DecodeHeader(raw); err != nil {
		return nil, raw, fmt.Errorf("%w: %s", ErrSubjectUndecodable, err)
	}
	stripped = raw
	for range maxTagRemovals {
		out, tag, ok := removeFirstTag(stripped, tags)
		if !ok {
			break
		}
		stripped = out
		if !containsString(found, tag) {
			found = append(found, tag)
		}
	}
	// A tag still readable (past the removal bound, or formed by cutting
	// another out) counts: the sender may have meant it.
	if text, err := dec.DecodeHeader(stripped); err == nil {
		for _, tag := range tags {
			if !containsString(found, tag) && indexFoldASCII(text, tag) >= 0 {
				found = append(found, tag)
			}
		}
	}
	return found, stripped, nil
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// indexAnyTag finds the first occurrence of any tag in s; it returns
// the offset and the tag, or -1.
func indexAnyTag(s string, tags []string) (int, string) {
	best, which := -1, ""
	for _, tag := range tags {
		if i := indexFoldASCII(s, tag); i >= 0 && (best < 0 || i < best) {
			best, which = i, tag
		}
	}
	return best, which
}

// removeFirstTag removes the first tag occurrence from a raw value.
func removeFirstTag(raw string, tags []string) (string, string, bool) {
	// Plain text between encoded words, then the word; words are found
	// one at a time, so a tag near the start costs little.
	prev := 0
	for {
		loc := []int{len(raw), len(raw)}
		if l := encodedWord.FindStringIndex(raw[prev:]); l != nil {
			loc = []int{prev + l[0], prev + l[1]}
		}
		if i, tag := indexAnyTag(raw[prev:loc[0]], tags); i >= 0 {
			return cutWithSpace(raw, prev+i, prev+i+len(tag)), tag, true
		}
		if loc[0] == len(raw) {
			break
		}
		// Inside one encoded word.
		word := raw[loc[0]:loc[1]]
		if text, enc, ok := decodeWord(word); ok {
			if i, tag := indexAnyTag(text, tags); i >= 0 {
				rest := cutWithSpace(text, i, i+len(tag))
				if strings.TrimSpace(rest) == "" {
					return cutWithSpace(raw, loc[0], loc[1]), tag, true
				}
				return raw[:loc[0]] + enc.Encode("utf-8", rest) + raw[loc[1]:], tag, true
			}
		}
		prev = loc[1]
	}
	// Across encoded words: decode the whole value and re-encode it.
	text, err := newWordDecoder().DecodeHeader(raw)
	if err != nil {
		return raw, "", false
	}
	i, tag := indexAnyTag(text, tags)
	if i < 0 {
		return raw, "", false
	}
	text = strings.Join(strings.Fields(cutWithSpace(text, i, i+len(tag))), " ")
	return mime.BEncoding.Encode("utf-8", text), tag, true
}

// decodeWord decodes one encoded word, in any charset the decoder
// knows, and says whether it was B or Q encoded.
func decodeWord(word string) (text string, enc mime.WordEncoder, ok bool) {
	parts := strings.SplitN(word[2:len(word)-2], "?", 3)
	if len(parts) != 3 {
		return "", 0, false
	}
	enc = mime.BEncoding
	if strings.EqualFold(parts[1], "q") {
		enc = mime.QEncoding
	}
	text, err := newWordDecoder().Decode(word)
	if err != nil {
		return "", 0, false
	}
	return text, enc, true
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
// folding only ASCII keeps byte offsets in s exact. It jumps between
// candidates for the tag's first byte (each case searched once), so a
// long value costs a few fast passes, never a pass per byte.
func indexFoldASCII(s, tag string) int {
	n := len(tag)
	if n == 0 {
		return 0
	}
	last := len(s) - n + 1 // candidates start before last
	if last <= 0 {
		return -1
	}
	lo, up := lowerASCII(tag[0]), upperASCII(tag[0])
	next := func(c byte, from int) int {
		if k := strings.IndexByte(s[from:last], c); k >= 0 {
			return from + k
		}
		return last
	}
	nextLo, nextUp := next(lo, 0), last
	if up != lo {
		nextUp = next(up, 0)
	}
	for {
		i := min(nextLo, nextUp)
		if i >= last {
			return -1
		}
		if equalFoldASCII(s[i:i+n], tag) {
			return i
		}
		if i == nextLo {
			nextLo = next(lo, i+1)
		}
		if i == nextUp && up != lo {
			nextUp = next(up, i+1)
		}
	}
}

func equalFoldASCII(a, b string) bool {
	for k := 0; k < len(a); k++ {
		if lowerASCII(a[k]) != lowerASCII(b[k]) {
			return false
		}
	}
	return true
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func upperASCII(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}
