package delivery

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/queue"
)

// rawServer is a destination spoken to line by line: the test's script
// reads exactly what the client sent and writes the replies it chooses,
// so that the order of commands on the wire, their parameters and the
// body's bytes are checked as a transcript.
type rawServer struct {
	t    *testing.T
	ln   net.Listener
	done chan struct{}
	// rest is every line the client sent after the script ended, up to
	// the connection's close.
	rest []string
}

// rawConn is the server end of one connection.
type rawConn struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

// readLine reads one line and returns it without its CRLF. A client
// that does not send it within 5 s (one that waits for a reply the
// script withholds) fails the test rather than hanging it.
func (c *rawConn) readLine() string {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Errorf("server: reading a line: %v (got %q)", err, l)
		return ""
	}
	if !strings.HasSuffix(l, "\r\n") {
		c.t.Errorf("server: line %q does not end in CRLF", l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

// expect reads lines and checks them against want, in order.
func (c *rawConn) expect(want ...string) {
	c.t.Helper()
	for _, w := range want {
		if got := c.readLine(); got != w {
			c.t.Errorf("server got %q, want %q", got, w)
		}
	}
}

func (c *rawConn) reply(lines ...string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, strings.Join(lines, "\r\n")+"\r\n"); err != nil {
		c.t.Errorf("server: writing a reply: %v", err)
	}
}

// readBytes reads exactly n bytes of a BDAT chunk.
func (c *rawConn) readBytes(n int) []byte {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(c.r, b); err != nil {
		c.t.Errorf("server: reading %d bytes: %v", n, err)
	}
	return b
}

// readData reads DATA content as it is on the wire, up to and including
// the terminating "\r\n.\r\n".
func (c *rawConn) readData() []byte {
	c.t.Helper()
	var b []byte
	for !bytes.HasSuffix(b, []byte("\r\n.\r\n")) && !bytes.Equal(b, []byte(".\r\n")) {
		c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		l, err := c.r.ReadBytes('\n')
		b = append(b, l...)
		if err != nil {
			c.t.Errorf("server: reading DATA: %v", err)
			break
		}
	}
	return b
}

// newRawServer accepts one connection, greets, answers the prelude's
// EHLO and the session's with caps, runs script, then records whatever
// else the client sends until it closes the connection.
func newRawServer(t *testing.T, caps []string, script func(c *rawConn)) *rawServer {
	ehlo := append([]string{"250-mx.test"}, caps...)
	for i := range ehlo[1:] {
		ehlo[i+1] = "250-" + ehlo[i+1]
	}
	ehlo[len(ehlo)-1] = "250 " + ehlo[len(ehlo)-1][4:]
	return startRawServer(t, func(c *rawConn) {
		c.reply("220 mx.test ESMTP")
		c.expect("EHLO gw.test")
		c.reply(ehlo...)
		c.expect("EHLO gw.test")
		c.reply(ehlo...)
		script(c)
	})
}

// startRawServer accepts one connection and runs script on it from the
// start, then records the rest.
func startRawServer(t *testing.T, script func(c *rawConn)) *rawServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{t: t, ln: ln, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		conn, err := ln.Accept()
		ln.Close()
		if err != nil {
			return
		}
		defer conn.Close()
		c := &rawConn{t: t, conn: conn, r: bufio.NewReader(conn)}
		script(c)
		for {
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			l, err := c.r.ReadString('\n')
			if err != nil {
				return
			}
			s.rest = append(s.rest, strings.TrimSuffix(l, "\r\n"))
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return s
}

// deliverTo runs one delivery to the raw server (as a smarthost without
// TLS), closes the deliverer's pooled connection and waits for the
// script to end; it returns the outcomes.
func (s *rawServer) deliverTo(d func(*Deliverer), req Request) []queue.RcptOutcome {
	s.t.Helper()
	dl := New(Options{Hostname: "gw.test", ConnectTimeout: 5 * time.Second, CommandTimeout: 5 * time.Second,
		IdleConnTimeout: time.Minute, MaxPerDestination: 1,
		Smarthost: &Smarthost{Addr: s.ln.Addr().String(), TLS: "none"}})
	if d != nil {
		d(dl)
	}
	if req.ID == "" {
		req.ID = "T1"
	}
	_, out := dl.Deliver(context.Background(), req)
	dl.Close()
	<-s.done
	return out
}

func msg(from string, body string, rcpts ...string) Request {
	return Request{From: from, Recipients: rcpts, Body: Bytes(body)}
}

func checkOutcome(t *testing.T, o queue.RcptOutcome, delivered, permanent bool, status, message string) {
	t.Helper()
	if o.Delivered != delivered || o.Permanent != permanent || o.Status != status || o.Message != message {
		t.Errorf("%s: %+v, want delivered=%v permanent=%v %s %q", o.Address, o, delivered, permanent, status, message)
	}
}

// TestPipelinedEnvelopeInOneFlight: with PIPELINING the server reads
// MAIL, every RCPT and DATA before it writes a single reply (a client
// that waited for the reply to MAIL would stall the script); a 5xx to
// one RCPT leaves the others delivered.
func TestPipelinedEnvelopeInOneFlight(t *testing.T) {
	body := "Subject: t\r\n\r\nhello\r\n"
	srv := newRawServer(t, []string{"PIPELINING", "SIZE 10000000", "8BITMIME"}, func(c *rawConn) {
		c.expect("MAIL FROM:<a@org.test> SIZE="+strconv.Itoa(len(body)),
			"RCPT TO:<b@x.test>", "RCPT TO:<gone@x.test>", "RCPT TO:<c@x.test>", "DATA")
		c.reply("250 2.1.0 ok", "250 2.1.5 ok", "550 5.1.1 no such user", "250 2.1.5 ok", "354 go ahead")
		if got := string(c.readData()); got != body+".\r\n" {
			t.Errorf("DATA %q", got)
		}
		c.reply("250 2.0.0 queued as X")
	})
	out := srv.deliverTo(nil, msg("a@org.test", body, "b@x.test", "gone@x.test", "c@x.test"))
	checkOutcome(t, out[0], true, false, "2.0.0", "250 2.0.0 queued as X")
	checkOutcome(t, out[1], false, true, "5.1.1", "550 5.1.1 no such user")
	checkOutcome(t, out[2], true, false, "2.0.0", "250 2.0.0 queued as X")
	if out[1].Code != 550 {
		t.Errorf("code %d", out[1].Code)
	}
	if len(srv.rest) != 0 {
		t.Errorf("after the transaction the client sent %q", srv.rest)
	}
}

// TestUnpipelinedOneCommandAtATime: without PIPELINING a refused MAIL
// is the last command sent, and when every RCPT is refused no DATA
// follows (the client waited for each reply before deciding); with it,
// the same replies find the whole envelope already sent.
func TestUnpipelinedOneCommandAtATime(t *testing.T) {
	t.Run("MAIL refused", func(t *testing.T) {
		srv := newRawServer(t, []string{"8BITMIME"}, func(c *rawConn) {
			c.expect("MAIL FROM:<a@org.test>")
			c.reply("451 4.3.0 try later")
		})
		out := srv.deliverTo(nil, msg("a@org.test", "x\r\n", "b@x.test", "c@x.test"))
		checkOutcome(t, out[0], false, false, "4.3.0", "451 4.3.0 try later")
		checkOutcome(t, out[1], false, false, "4.3.0", "451 4.3.0 try later")
		if len(srv.rest) != 0 {
			t.Errorf("after a refused MAIL the client sent %q", srv.rest)
		}
	})
	t.Run("every RCPT refused", func(t *testing.T) {
		srv := newRawServer(t, nil, func(c *rawConn) {
			c.expect("MAIL FROM:<a@org.test>")
			c.reply("250 ok")
			c.expect("RCPT TO:<b@x.test>")
			c.reply("550 5.1.1 no")
			c.expect("RCPT TO:<c@x.test>")
			c.reply("452 4.2.2 full")
			c.expect("RSET")
			c.reply("250 ok")
		})
		out := srv.deliverTo(nil, msg("a@org.test", "x\r\n", "b@x.test", "c@x.test"))
		checkOutcome(t, out[0], false, true, "5.1.1", "550 5.1.1 no")
		checkOutcome(t, out[1], false, false, "4.2.2", "452 4.2.2 full")
		if len(srv.rest) != 0 {
			t.Errorf("the client sent %q", srv.rest)
		}
	})
	t.Run("every RCPT refused, pipelined", func(t *testing.T) {
		srv := newRawServer(t, []string{"PIPELINING"}, func(c *rawConn) {
			c.expect("MAIL FROM:<a@org.test>", "RCPT TO:<b@x.test>", "RCPT TO:<c@x.test>", "DATA")
			c.reply("250 ok", "550 5.1.1 no", "452 4.2.2 full", "554 5.5.1 no valid recipients")
			c.expect("RSET")
			c.reply("250 ok")
		})
		out := srv.deliverTo(nil, msg("a@org.test", "x\r\n", "b@x.test", "c@x.test"))
		checkOutcome(t, out[0], false, true, "5.1.1", "550 5.1.1 no")
		checkOutcome(t, out[1], false, false, "4.2.2", "452 4.2.2 full")
	})
}

// TestDotStuffingOnTheWire: a "." that begins a line, the body's first
// line included, goes out doubled; a bare LF goes out as CRLF; a last
// line without CRLF gets one before the terminating ".".
func TestDotStuffingOnTheWire(t *testing.T) {
	body := ".first\r\nplain\r\n..two\r\n.\r\nbare\nlf\r\n.last"
	want := "..first\r\nplain\r\n...two\r\n..\r\nbare\r\nlf\r\n..last\r\n.\r\n"
	srv := newRawServer(t, []string{"PIPELINING", "CHUNKING"}, func(c *rawConn) {
		c.expect("MAIL FROM:<a@org.test>", "RCPT TO:<b@x.test>", "DATA")
		c.reply("250 ok", "250 ok", "354 go ahead")
		if got := string(c.readData()); got != want {
			t.Errorf("DATA on the wire\n got %q\nwant %q", got, want)
		}
		c.reply("250 ok")
	})
	out := srv.deliverTo(func(d *Deliverer) { d.noChunking = true }, msg("a@org.test", body, "b@x.test"))
	checkOutcome(t, out[0], true, false, "2.0.0", "250 ok")
}

// TestBDATChunks: with CHUNKING the body goes in BDAT chunks whose sizes
// are exact, the last marked LAST, without dot-stuffing; with
// PIPELINING every chunk is sent before the first reply is read.
func TestBDATChunks(t *testing.T) {
	body := ".a\r\n..b\r\n.\r\nfour!!\r\n" // 20 bytes: chunks of 8, 8 and 4
	srv := newRawServer(t, []string{"PIPELINING", "CHUNKING", "8BITMIME"}, func(c *rawConn) {
		c.expect("MAIL FROM:<a@org.test>", "RCPT TO:<b@x.test>")
		c.reply("250 ok", "250 ok")
		var got []byte
		for _, head := range []string{"BDAT 8", "BDAT 8", "BDAT 4 LAST"} {
			c.expect(head)
			n, _ := strconv.Atoi(strings.Fields(head)[1])
			got = append(got, c.readBytes(n)...)
		}
		if string(got) != body {
			t.Errorf("BDAT content %q, want the body unchanged %q", got, body)
		}
		c.reply("250 2.0.0 chunk", "250 2.0.0 chunk", "250 2.0.0 queued")
	})
	out := srv.deliverTo(func(d *Deliverer) { d.bdatChunkSize = 8 }, msg("a@org.test", body, "b@x.test"))
	checkOutcome(t, out[0], true, false, "2.0.0", "250 2.0.0 queued")

	t.Run("one chunk, last line completed", func(t *testing.T) {
		srv := newRawServer(t, []string{"CHUNKING"}, func(c *rawConn) {
			c.expect("MAIL FROM:<a@org.test>")
			c.reply("250 ok")
			c.expect("RCPT TO:<b@x.test>")
			c.reply("250 ok")
			c.expect("BDAT 15 LAST")
			if got := string(c.readBytes(15)); got != ".x\r\nbare\r\nend\r\n" {
				t.Errorf("BDAT content %q", got)
			}
			c.reply("250 ok")
		})
		out := srv.deliverTo(nil, msg("a@org.test", ".x\r\nbare\nend", "b@x.test"))
		checkOutcome(t, out[0], true, false, "2.0.0", "250 ok")
	})

	t.Run("refused chunk, unpipelined", func(t *testing.T) {
		srv := newRawServer(t, []string{"CHUNKING"}, func(c *rawConn) {
			c.expect("MAIL FROM:<a@org.test>")
			c.reply("250 ok")
			c.expect("RCPT TO:<b@x.test>")
			c.reply("250 ok")
			c.expect("BDAT 8")
			c.readBytes(8)
			c.reply("552 5.3.4 too big")
			c.expect("RSET") // and no second chunk
			c.reply("250 ok")
		})
		out := srv.deliverTo(func(d *Deliverer) { d.bdatChunkSize = 8 }, msg("a@org.test", body, "b@x.test"))
		checkOutcome(t, out[0], false, true, "5.3.4", "552 5.3.4 too big")
	})
}

// TestTemporaryDataFailureDefersAccepted: a 4xx to DATA, or to the
// message after it, defers every accepted recipient; one refused for
// good at RCPT stays refused.
func TestTemporaryDataFailureDefersAccepted(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script func(c *rawConn)
	}{
		{"to DATA", func(c *rawConn) {
			c.reply("250 ok", "250 ok", "550 5.1.1 no", "250 ok", "451 4.3.0 not now")
		}},
		{"to the message", func(c *rawConn) {
			c.reply("250 ok", "250 ok", "550 5.1.1 no", "250 ok", "354 go ahead")
			c.readData()
			c.reply("451 4.3.0 not now")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newRawServer(t, []string{"PIPELINING"}, func(c *rawConn) {
				c.expect("MAIL FROM:<a@org.test>", "RCPT TO:<b@x.test>", "RCPT TO:<gone@x.test>", "RCPT TO:<c@x.test>", "DATA")
				tc.script(c)
				c.expect("RSET") // the connection is kept for the next message
				c.reply("250 ok")
			})
			out := srv.deliverTo(nil, msg("a@org.test", "x\r\n", "b@x.test", "gone@x.test", "c@x.test"))
			checkOutcome(t, out[0], false, false, "4.3.0", "451 4.3.0 not now")
			checkOutcome(t, out[1], false, true, "5.1.1", "550 5.1.1 no")
			checkOutcome(t, out[2], false, false, "4.3.0", "451 4.3.0 not now")
		})
	}
}

// TestMailParameters: BODY=8BITMIME only for an 8-bit body to a server
// that offers 8BITMIME, SIZE where offered, REQUIRETLS and SMTPUTF8 when
// the message needs them.
func TestMailParameters(t *testing.T) {
	for _, tc := range []struct {
		name string
		caps []string
		req  Request
		want string
	}{
		{"7-bit", []string{"8BITMIME", "SIZE"}, msg("a@org.test", "x\r\n", "b@x.test"),
			"MAIL FROM:<a@org.test> SIZE=3"},
		{"8-bit", []string{"8BITMIME", "SIZE"}, msg("a@org.test", "caf\xc3\xa9\r\n", "b@x.test"),
			"MAIL FROM:<a@org.test> BODY=8BITMIME SIZE=7"},
		{"8-bit, no 8BITMIME", nil, msg("a@org.test", "caf\xc3\xa9\r\n", "b@x.test"),
			"MAIL FROM:<a@org.test>"},
		{"null sender, SMTPUTF8, REQUIRETLS", []string{"SMTPUTF8", "REQUIRETLS"},
			func() Request {
				r := msg("", "x\r\n", "bjørn@x.test")
				r.SMTPUTF8, r.TLS.RequireTLSExtension = true, true
				return r
			}(),
			"MAIL FROM:<> REQUIRETLS SMTPUTF8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newRawServer(t, tc.caps, func(c *rawConn) {
				c.expect(tc.want)
				c.reply("250 ok")
				c.expect("RCPT TO:<" + tc.req.Recipients[0] + ">")
				c.reply("250 ok")
				c.expect("DATA")
				c.reply("354 go ahead")
				c.readData()
				c.reply("250 ok")
			})
			out := srv.deliverTo(nil, tc.req)
			checkOutcome(t, out[0], true, false, "2.0.0", "250 ok")
		})
	}
}

// TestHELOFallback: a server that does not know EHLO gets HELO, and
// then no extension is used.
func TestHELOFallback(t *testing.T) {
	s := startRawServer(t, func(c *rawConn) {
		c.reply("220 old.test SMTP")
		c.expect("EHLO gw.test")
		c.reply("502 5.5.1 what?")
		c.expect("EHLO gw.test")
		c.reply("500 5.5.1 what?")
		c.expect("HELO gw.test")
		c.reply("250 old.test")
		c.expect("MAIL FROM:<a@org.test>")
		c.reply("250 ok")
		c.expect("RCPT TO:<b@x.test>")
		c.reply("250 ok")
		c.expect("DATA")
		c.reply("354 go ahead")
		if got := string(c.readData()); got != "..x\r\n.\r\n" {
			t.Errorf("DATA %q", got)
		}
		c.reply("250 ok")
	})
	out := s.deliverTo(nil, msg("a@org.test", ".x\r\n", "b@x.test"))
	checkOutcome(t, out[0], true, false, "2.0.0", "250 ok")
}

// failingBody reads as data, then fails: a spooled body whose file is
// damaged half-way.
type failingBody struct{ data string }

func (b failingBody) Size() int64 { return int64(len(b.data)) * 2 }
func (b failingBody) Open() (io.ReadCloser, error) {
	return io.NopCloser(io.MultiReader(strings.NewReader(b.data), iotestErrReader{})), nil
}

type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

// TestUnreadableBodyNeverEndsTheMessage: when the body cannot be read to
// its end, the message is never terminated (no final "." after DATA, no
// BDAT LAST): the connection closes, the server drops the transaction,
// and the recipient waits with a temporary failure that says why. A
// message cut short is never delivered.
func TestUnreadableBodyNeverEndsTheMessage(t *testing.T) {
	const wantMsg = "the message could not be read from the spool: unexpected EOF"
	t.Run("DATA", func(t *testing.T) {
		srv := newRawServer(t, nil, func(c *rawConn) {
			c.expect("MAIL FROM:<a@org.test>")
			c.reply("250 ok")
			c.expect("RCPT TO:<b@x.test>")
			c.reply("250 ok")
			c.expect("DATA")
			c.reply("354 go ahead")
		})
		out := srv.deliverTo(nil, Request{From: "a@org.test", Recipients: []string{"b@x.test"},
			Body: failingBody{"Subject: t\r\n\r\nfirst line\r\nsecond"}})
		checkOutcome(t, out[0], false, false, "4.3.0", wantMsg)
		for _, l := range srv.rest {
			if l == "." {
				t.Fatalf("the message was terminated after a read failure: %q", srv.rest)
			}
		}
	})
	t.Run("BDAT", func(t *testing.T) {
		srv := newRawServer(t, []string{"CHUNKING"}, func(c *rawConn) {
			c.expect("MAIL FROM:<a@org.test>")
			c.reply("250 ok")
			c.expect("RCPT TO:<b@x.test>")
			c.reply("250 ok")
			c.expect("BDAT 8")
			c.readBytes(8)
			c.reply("250 ok")
		})
		out := srv.deliverTo(func(d *Deliverer) { d.bdatChunkSize = 8 }, Request{From: "a@org.test",
			Recipients: []string{"b@x.test"}, Body: failingBody{"Subject: t\r\n\r\n"}})
		checkOutcome(t, out[0], false, false, "4.3.0", wantMsg)
		for _, l := range srv.rest {
			if strings.Contains(l, "LAST") {
				t.Fatalf("a last chunk was sent after a read failure: %q", srv.rest)
			}
		}
	})
}
