package smtpin

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/mailtext"
)

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
			if mailtext.HasBareLineEnding(b) {
				t.Fatalf("spooled a message with a bare line ending: %q", b)
			}
		}
	})
}
