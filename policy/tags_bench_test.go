package policy

import (
	"strings"
	"testing"

	"github.com/sealgate/sealgate/config"
)

// hugeFoldedSubject is a hostile Subject of about n bytes: encoded words
// and plain text folded over many lines, with no tag in it.
func hugeFoldedSubject(n int) string {
	var b strings.Builder
	for b.Len() < n {
		b.WriteString("=?utf-8?B?QmVmdW5kIMO8YmVy?=\r\n Quarterly [secure] results\r\n ")
	}
	return b.String()
}

// BenchmarkStripTagsHugeSubject: a 4 MB folded Subject must cost about
// what a short one costs (tags are searched in a bounded prefix only).
func BenchmarkStripTagsHugeSubject(b *testing.B) {
	raw := hugeFoldedSubject(4 << 20)
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		StripTags(raw, defaultTags)
	}
}

// BenchmarkApplyHugeSubject is the same Subject through Apply, the path
// of the live gateway (header split, header decoding, tags, rules).
func BenchmarkApplyHugeSubject(b *testing.B) {
	e := benchEngine(b)
	msg := []byte("From: a@org.test\r\nSubject: " + hugeFoldedSubject(4<<20) + "\r\n\r\nbody\r\n")
	in := Session{From: "a@org.test", Recipients: []string{"b@x.test"}, Trusted: true}
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		Apply(e, in, msg)
	}
}

func benchEngine(b *testing.B) *Engine {
	b.Helper()
	c, err := config.Default()
	if err != nil {
		b.Fatal(err)
	}
	e, err := Compile(c.Policy)
	if err != nil {
		b.Fatal(err)
	}
	return e
}

// BenchmarkStripTagsAtLimit is the most StripTags ever does: a Subject
// just under the searched size, folded encoded words full of tags, so
// that every removal up to the bound happens.
func BenchmarkStripTagsAtLimit(b *testing.B) {
	raw := hugeFoldedSubject(maxSubjectBytes)
	raw = raw[:strings.LastIndex(raw[:maxSubjectBytes], "\r\n")]
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, _, err := StripTags(raw, defaultTags); err != nil {
			b.Fatal(err)
		}
	}
}
