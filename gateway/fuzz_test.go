package gateway

import (
	"bufio"
	"bytes"
	"net"
	"strings"
	"testing"
	"time"
)

// FuzzLineEndings checks the smuggling defence: a message is refused iff
// it has a bare CR or LF, and normalizing leaves none and changes
// nothing else.
func FuzzLineEndings(f *testing.F) {
	for _, s := range []string{"a\r\nb\r\n", "a\nb", "a\rb", "\r", "\n", "\r\r\n", "x\r\n.\n", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		bare := false
		for i, c := range b {
			if c == '\n' && (i == 0 || b[i-1] != '\r') || c == '\r' && (i+1 == len(b) || b[i+1] != '\n') {
				bare = true
			}
		}
		if got := hasBareLineEnding(b); got != bare {
			t.Fatalf("hasBareLineEnding(%q) = %v, want %v", b, got, bare)
		}
		n := normalizeLineEndings(b)
		if hasBareLineEnding(n) {
			t.Fatalf("normalizeLineEndings(%q) = %q still has a bare line ending", b, n)
		}
		strip := func(x []byte) []byte {
			return bytes.ReplaceAll(bytes.ReplaceAll(x, []byte("\r"), nil), []byte("\n"), nil)
		}
		if !bytes.Equal(strip(n), strip(b)) {
			t.Fatalf("normalizeLineEndings(%q) = %q changed more than line endings", b, n)
		}
	})
}

// FuzzInboundSession sends arbitrary command lines to a live inbound
// server: whatever arrives, the server answers or closes, never panics,
// and spools only messages without bare line endings.
func FuzzInboundSession(f *testing.F) {
	for _, s := range []string{
		"EHLO a\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n",
		"EHLO a\r\nMAIL FROM:<a@b.test> SIZE=99999999999999999999\r\n",
		"EHLO a\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\nx\n.\nMAIL FROM:<e@f.test>\r\n.\r\n",
		"HELO\r\nAUTH PLAIN =\r\nSTARTTLS x\r\nBDAT 5 LAST\r\nabcde",
		"EHLO a\r\nMAIL FROM:<\xff@\x00>\r\nRCPT TO:<@@>\r\nRCPT TO:<a@b> NOTIFY=x\r\nVRFY x\r\n",
	} {
		f.Add(s)
	}
	cfg := testInboundConfig(f)
	srv := startInbound(f, cfg, false)
	f.Fuzz(func(t *testing.T, script string) {
		conn, err := net.DialTimeout("tcp", srv.addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		go func() {
			conn.Write([]byte(script))
			conn.Write([]byte("\r\n.\r\nQUIT\r\n"))
		}()
		r := bufio.NewReader(conn)
		for range 1000 {
			line, err := r.ReadString('\n')
			if err != nil {
				break
			}
			if len(line) < 4 || !strings.ContainsAny(line[:1], "2345") {
				t.Fatalf("malformed reply line %q", line)
			}
		}
		srv.spool.mu.Lock()
		defer srv.spool.mu.Unlock()
		for _, b := range srv.spool.bodies {
			if hasBareLineEnding(b) {
				t.Fatalf("spooled a message with a bare line ending: %q", b)
			}
		}
	})
}
