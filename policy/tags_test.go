package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var defaultTags = []string{"[secure]", "[encrypt]", "[escrow]"}

// TestStripTagsGolden runs testdata/subjects: NN-name.in is a raw Subject
// value as Outlook or Gmail send it, .want the value after stripping,
// byte for byte, and .tags the tag that must be found ("" for none).
// An optional .text is what the recipient reads (the result decoded); an
// .err names the error of a Subject that cannot be searched, which must
// then be left exactly as it came.
func TestStripTagsGolden(t *testing.T) {
	ins, _ := filepath.Glob("testdata/subjects/*.in")
	if len(ins) == 0 {
		t.Fatal("no golden subjects")
	}
	for _, in := range ins {
		base := strings.TrimSuffix(in, ".in")
		t.Run(filepath.Base(base), func(t *testing.T) {
			raw, _ := os.ReadFile(in)
			found, got, err := StripTags(string(raw), defaultTags)
			if wantErr, e := os.ReadFile(base + ".err"); e == nil {
				if err == nil || !strings.Contains(err.Error(), string(wantErr)) {
					t.Errorf("error %v, want one saying %q", err, wantErr)
				}
				if got != string(raw) || len(found) > 0 {
					t.Errorf("an unsearchable Subject changed: %q, tags %q", got, found)
				}
				return
			}
			if err != nil {
				t.Fatalf("StripTags: %v", err)
			}
			want, e := os.ReadFile(base + ".want")
			if e != nil {
				t.Fatal(e)
			}
			wantTag, _ := os.ReadFile(base + ".tags")
			if got != string(want) {
				t.Errorf("stripped:\n got %q\nwant %q", got, want)
			}
			if strings.Join(found, ",") != string(wantTag) {
				t.Errorf("tags found %q, want %q", found, wantTag)
			}
			// What the recipient reads has no tag left, and the rest intact.
			dec, err := newWordDecoder().DecodeHeader(got)
			if err != nil || indexFoldASCII(dec, "[secure]") >= 0 || indexFoldASCII(dec, "[encrypt]") >= 0 {
				t.Errorf("decoded result %q (%v) still carries a tag", dec, err)
			}
			if wantText, e := os.ReadFile(base + ".text"); e == nil && dec != string(wantText) {
				t.Errorf("recipient reads %q, want %q", dec, wantText)
			}
		})
	}
}

// TestStripTagsOversizedSubject: a Subject past the searched size is not
// searched at all (the caller then treats the message as tagged), and
// is left as it came.
func TestStripTagsOversizedSubject(t *testing.T) {
	raw := strings.Repeat("results ", maxSubjectBytes/8) + " [secure]"
	found, out, err := StripTags(raw, defaultTags)
	if !errors.Is(err, ErrSubjectTooLong) || out != raw || len(found) > 0 {
		t.Errorf("oversized Subject: err %v, changed %v, tags %q", err, out != raw, found)
	}
	// Just under the limit, the tag at the end is found and removed.
	raw = raw[len(raw)-maxSubjectBytes:]
	if found, out, err := StripTags(raw, defaultTags); err != nil || len(found) != 1 || strings.Contains(out, "[secure]") {
		t.Errorf("Subject at the limit: err %v, tags %q", err, found)
	}
}

// TestStripTagsRemovalBound: past the bounded number of removals, tags
// still in the Subject are reported found, never silently kept.
func TestStripTagsRemovalBound(t *testing.T) {
	raw := "x" + strings.Repeat(" [secure]", maxTagRemovals+5) + " [escrow]"
	found, _, err := StripTags(raw, defaultTags)
	if err != nil || strings.Join(found, ",") != "[secure],[escrow]" {
		t.Errorf("tags found %q (%v)", found, err)
	}
	// A tag that only appears once another is removed counts too.
	found, out, _ := StripTags("Re: [esc[secure]row] x", defaultTags)
	if !containsString(found, "[escrow]") || strings.Contains(out, "[escrow]") {
		t.Errorf("nested tags: found %q, left %q", found, out)
	}
}

func FuzzStripTags(f *testing.F) {
	ins, _ := filepath.Glob("testdata/subjects/*.in")
	for _, in := range ins {
		raw, _ := os.ReadFile(in)
		f.Add(string(raw))
	}
	f.Fuzz(func(t *testing.T, raw string) {
		found, out, err := StripTags(raw, defaultTags)
		if err != nil && (out != raw || len(found) > 0) {
			t.Fatalf("error %v, yet the subject changed or tags were found", err)
		}
		if len(found) == 0 && out != raw {
			t.Fatalf("no tag found but the subject changed: %q -> %q", raw, out)
		}
		if len(out) > len(raw)*4+64 {
			t.Fatalf("output grew unreasonably: %d -> %d bytes", len(raw), len(out))
		}
		// Whatever the recipient would read as a tag was found.
		if dec, derr := newWordDecoder().DecodeHeader(out); err == nil && derr == nil {
			for _, tag := range defaultTags {
				if indexFoldASCII(dec, tag) >= 0 && !containsString(found, tag) {
					t.Fatalf("%q readable in %q but not reported", tag, dec)
				}
			}
		}
	})
}
