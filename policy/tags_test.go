package policy

import (
	"mime"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var defaultTags = []string{"[secure]", "[encrypt]", "[escrow]"}

// TestStripTagsGolden runs testdata/subjects: NN-name.in is a raw Subject
// value as Outlook or Gmail send it, .want the value after stripping,
// byte for byte, and .tags the tag that must be found ("" for none).
func TestStripTagsGolden(t *testing.T) {
	ins, _ := filepath.Glob("testdata/subjects/*.in")
	if len(ins) == 0 {
		t.Fatal("no golden subjects")
	}
	for _, in := range ins {
		base := strings.TrimSuffix(in, ".in")
		t.Run(filepath.Base(base), func(t *testing.T) {
			raw, _ := os.ReadFile(in)
			want, _ := os.ReadFile(base + ".want")
			wantTag, _ := os.ReadFile(base + ".tags")
			found, got := StripTags(string(raw), defaultTags)
			if got != string(want) {
				t.Errorf("stripped:\n got %q\nwant %q", got, want)
			}
			if strings.Join(found, ",") != string(wantTag) {
				t.Errorf("tags found %q, want %q", found, wantTag)
			}
			// What the recipient reads has no tag left.
			dec, err := new(mime.WordDecoder).DecodeHeader(got)
			if err != nil || indexFoldASCII(dec, "[secure]") >= 0 || indexFoldASCII(dec, "[encrypt]") >= 0 {
				t.Errorf("decoded result %q (%v) still carries a tag", dec, err)
			}
		})
	}
}

func FuzzStripTags(f *testing.F) {
	ins, _ := filepath.Glob("testdata/subjects/*.in")
	for _, in := range ins {
		raw, _ := os.ReadFile(in)
		f.Add(string(raw))
	}
	f.Fuzz(func(t *testing.T, raw string) {
		found, out := StripTags(raw, defaultTags)
		if len(found) == 0 && out != raw {
			t.Fatalf("no tag found but the subject changed: %q -> %q", raw, out)
		}
		if len(out) > len(raw)*4+64 {
			t.Fatalf("output grew unreasonably: %d -> %d bytes", len(raw), len(out))
		}
	})
}
