package delivery

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net/textproto"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/sealgate/sealgate/internal/testutil"
)

// stuffOracle is DATA content by the letter of RFC 5321 §4.5.2, a byte
// at a time: a line-initial "." doubled, LF preceded by CR, the last line
// ended, then ".".
func stuffOracle(body []byte) []byte {
	var out []byte
	lineStart, prev := true, byte(0)
	for _, c := range body {
		if lineStart && c == '.' {
			out = append(out, '.')
		}
		if c == '\n' && prev != '\r' {
			out = append(out, '\r')
		}
		out = append(out, c)
		lineStart, prev = c == '\n', c
	}
	switch {
	case lineStart:
	case prev == '\r':
		out = append(out, '\n')
	default:
		out = append(out, '\r', '\n')
	}
	return append(out, ".\r\n"...)
}

// stuffInPieces runs body through a dotWriter cut at the given offsets.
func stuffInPieces(body []byte, cuts ...int) []byte {
	var b bytes.Buffer
	w := newDotWriter(&b)
	prev := 0
	for _, c := range cuts {
		w.Write(body[prev:c])
		prev = c
	}
	w.Write(body[prev:])
	w.Close()
	return b.Bytes()
}

var dotCases = []string{
	"",
	".",
	"..",
	".\r\n",
	"a",
	"a\r\n",
	"a\r",
	"\n",
	"\r\n.\r\n",
	".start\r\nmiddle\r\n.dot\r\n..two\r\nend",
	"bare\nlf\n.after bare\n",
	"cr\r.not a line start\r\n",
	"\r\r\n.x",
	"x\r\n\r\n.\r\n\r\n.",
}

// TestDotWriterSplitAnywhere: the output is the oracle's whichever way
// the body is cut into writes — a chunk boundary between CR and LF,
// between LF and ".", before the very first "." included.
func TestDotWriterSplitAnywhere(t *testing.T) {
	for _, body := range dotCases {
		want := stuffOracle([]byte(body))
		for i := 0; i <= len(body); i++ {
			for j := i; j <= len(body); j++ {
				if got := stuffInPieces([]byte(body), i, j); !bytes.Equal(got, want) {
					t.Errorf("%q cut at %d and %d:\n got %q\nwant %q", body, i, j, got, want)
				}
			}
		}
	}
}

// TestDotWriterMatchesTextproto: on bodies without a doubled CR (where
// net/textproto's writer mistakes "\r\r\n" for a bare LF), the output is
// what the previous byte-at-a-time writer sent.
func TestDotWriterMatchesTextproto(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte(".\r\nab")
	for range 5000 {
		body := make([]byte, rng.IntN(40))
		for i := range body {
			body[i] = alphabet[rng.IntN(len(alphabet))]
		}
		if bytes.Contains(body, []byte("\r\r")) || len(body) == 0 {
			continue
		}
		var tp bytes.Buffer
		bw := bufio.NewWriter(&tp)
		dw := textproto.NewWriter(bw).DotWriter()
		dw.Write(body)
		dw.Close()
		if got := stuffInPieces(body, len(body)/2); !bytes.Equal(got, tp.Bytes()) {
			t.Fatalf("%q: got %q, textproto %q", body, got, tp.Bytes())
		}
	}
}

func FuzzDotWriter(f *testing.F) {
	for _, c := range dotCases {
		f.Add([]byte(c), uint16(1))
	}
	f.Fuzz(func(t *testing.T, body []byte, cut uint16) {
		at := int(cut) % (len(body) + 1)
		if got, want := stuffInPieces(body, at), stuffOracle(body); !bytes.Equal(got, want) {
			t.Errorf("%q cut at %d:\n got %q\nwant %q", body, at, got, want)
		}
	})
}

// TestCRLFReader: the body as BDAT sends it, every line ending CRLF,
// read in pieces cut anywhere.
func TestCRLFReader(t *testing.T) {
	for in, want := range map[string]string{
		"":                   "",
		"a\r\nb\r\n":         "a\r\nb\r\n",
		"a\r\nb":             "a\r\nb\r\n",
		"a\nb\n":             "a\r\nb\r\n",
		"\n\n":               "\r\n\r\n",
		"a\r":                "a\r\n",
		"a\rb\n":             "a\rb\r\n",
		".x\r\n..y\r\n.\r\n": ".x\r\n..y\r\n.\r\n",
	} {
		for _, name := range []string{"whole", "one byte"} {
			var src io.Reader = strings.NewReader(in)
			if name == "one byte" {
				src = iotest.OneByteReader(src)
			}
			got, err := io.ReadAll(iotest.OneByteReader(newCRLFReader(src, int64(len(in)))))
			if err != nil || string(got) != want {
				t.Errorf("%s: %q read as %q (%v), want %q", name, in, got, err, want)
			}
		}
	}
}

// TestBDATChunking: chunks of the given size, the last one marked, none
// empty but for an empty body's.
func TestBDATChunking(t *testing.T) {
	for _, tc := range []struct {
		body string
		size int
		want []string
	}{
		{"", 4, []string{""}},
		{"ab\r\n", 4, []string{"ab\r\n"}},
		{"abc\r\n", 4, []string{"abc\r", "\n"}},
		{"abcdef\n", 4, []string{"abcd", "ef\r\n"}},
		// Bare LFs make the body longer than its size: still one chunk.
		{"a\nb\nc\n", 100, []string{"a\r\nb\r\nc\r\n"}},
	} {
		c := newBDATChunks(strings.NewReader(tc.body), int64(len(tc.body)), tc.size)
		var got []string
		for i := 0; i < 10; i++ {
			chunk, last, err := c.next()
			if err != nil {
				t.Fatalf("%q: %v", tc.body, err)
			}
			got = append(got, string(bytes.Join(chunk, nil)))
			if last {
				break
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%q in chunks of %d: %q, want %q", tc.body, tc.size, got, tc.want)
		}
		if _, _, err := c.next(); err != io.EOF {
			t.Errorf("%q: after the last chunk: %v, want EOF", tc.body, err)
		}
	}
}

// TestPieceChunks: a body in memory, in pieces (a signature header and
// the spooled body), goes out in chunks of the given size across the
// pieces, without a copy; only bodies already in whole CRLF lines take
// this path.
func TestPieceChunks(t *testing.T) {
	ps := [][]byte{[]byte("DKIM: x\r\n"), nil, []byte("Subject: y\r\n\r\nbody\r\n")}
	c := &pieceChunks{pieces: slices.Clone(ps), size: 8}
	var got []string
	for i := 0; i < 20; i++ {
		chunk, last, err := c.next()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(bytes.Join(chunk, nil)))
		if last {
			break
		}
	}
	if want := []string{"DKIM: x\r", "\nSubject", ": y\r\n\r\nb", "ody\r\n"}; !slices.Equal(got, want) {
		t.Errorf("chunks %q, want %q", got, want)
	}
	for in, want := range map[string]bool{
		"": true, "a\r\n": true, "a\r|\nb\r\n": true, "a\n": false, "a\r\nb": false, "|\n": false, "a\r\n|b\nc\r\n": false,
	} {
		var ps [][]byte
		for _, p := range strings.Split(in, "|") {
			ps = append(ps, []byte(p))
		}
		if got := wholeLinesPieces(ps); got != want {
			t.Errorf("wholeLinesPieces(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestHas8bit(t *testing.T) {
	long := strings.Repeat("abcdefgh", 9)
	for i := 0; i <= len(long); i++ {
		b := []byte(long)
		if has8bit(b) {
			t.Fatal("7-bit text reported 8-bit")
		}
		if i < len(b) {
			b[i] = 0x80
			if !has8bit(b) {
				t.Fatalf("8-bit byte at %d of %d missed", i, len(b))
			}
		}
	}
}

// TestBodyInteropWithGoSMTP: go-smtp's server, another implementation,
// gets the body back exactly — dots and all — over DATA and over BDAT.
func TestBodyInteropWithGoSMTP(t *testing.T) {
	body := ".first\r\nplain\r\n..two\r\n.\r\n" + strings.Repeat("line of text\r\n.dot\r\n", 5000) + "end\r\n"
	for _, chunking := range []bool{false, true} {
		f := newDeliveryFixture(t, nil)
		f.d.noChunking = !chunking
		f.d.bdatChunkSize = 4096 // many chunks
		sink := f.mx("d.test", "mx.d.test", "127.0.0.2", 10, testutil.SinkOptions{TLS: true, CA: f.ca})
		_, out := f.d.Deliver(context.Background(), Request{ID: "T", From: "a@org.test", Domain: "d.test",
			Recipients: []string{"b@d.test", "c@d.test"}, Body: Bytes(body)})
		if !out[0].Delivered || !out[1].Delivered {
			t.Fatalf("chunking=%v: %+v", chunking, out)
		}
		if m := sink.Messages(); len(m) != 1 || string(m[0].Data) != body {
			t.Errorf("chunking=%v: the sink got another body", chunking)
		}
	}
}
