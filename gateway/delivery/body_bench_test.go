package delivery

import (
	"bufio"
	"bytes"
	"io"
	"net/textproto"
	"strconv"
	"strings"
	"testing"
)

// benchBody is a message of about size bytes in 78-character CRLF lines
// (base64-like), one line in fifty starting with ".".
func benchBody(size int) []byte {
	var b strings.Builder
	b.WriteString("Subject: benchmark\r\n\r\n")
	for i := 0; b.Len() < size; i++ {
		line := strings.Repeat("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo", 3)[:76]
		if i%50 == 0 {
			line = "." + line[1:]
		}
		b.WriteString(line)
		b.WriteString("\r\n")
	}
	return []byte(b.String())
}

var benchSizes = []int{10 << 10, 100 << 10, 1 << 20}

func sizeName(n int) string {
	if n >= 1<<20 {
		return strconv.Itoa(n>>20) + "MB"
	}
	return strconv.Itoa(n>>10) + "KB"
}

// BenchmarkBodyDATA: the body as DATA content through dotWriter, into
// the session's 32 KiB buffer.
func BenchmarkBodyDATA(b *testing.B) {
	for _, size := range benchSizes {
		body := benchBody(size)
		b.Run(sizeName(size), func(b *testing.B) {
			w := bufio.NewWriterSize(io.Discard, writeBufferSize)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				dw := newDotWriter(w)
				dw.Write(body)
				dw.Close()
				w.Flush()
			}
		})
	}
}

// BenchmarkBodyDATATextproto: the same through net/textproto's
// DotWriter, a byte at a time, as go-smtp's client sent it before.
func BenchmarkBodyDATATextproto(b *testing.B) {
	for _, size := range benchSizes {
		body := benchBody(size)
		b.Run(sizeName(size), func(b *testing.B) {
			w := bufio.NewWriterSize(io.Discard, 4096) // go-smtp's textproto.Conn
			tw := textproto.NewWriter(w)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				dw := tw.DotWriter()
				dw.Write(body)
				dw.Close()
			}
		})
	}
}

// BenchmarkBodyBDAT: the body in 1 MiB BDAT chunks (the line check,
// the chunk commands, the writes).
func BenchmarkBodyBDAT(b *testing.B) {
	for _, size := range benchSizes {
		body := benchBody(size)
		b.Run(sizeName(size), func(b *testing.B) {
			s := &session{w: bufio.NewWriterSize(io.Discard, writeBufferSize)}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				chunks := newBDATChunks(bytes.NewReader(body), int64(len(body)), bdatChunkSize)
				for {
					chunk, last, _ := chunks.next()
					s.command("BDAT " + strconv.Itoa(len(chunk[0])) + " LAST")
					s.w.Write(chunk[0])
					if last {
						break
					}
				}
				s.w.Flush()
			}
		})
	}
}
