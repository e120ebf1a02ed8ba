package smtpin

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/config"
)

// expectClosed reads until the server closes the connection. A read
// timeout is a failure: the point is that the server hung up, not that
// it went quiet.
func (c *smtpClient) expectClosed() {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	rest, err := io.ReadAll(c.r)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.t.Fatalf("connection still open (read %q)", rest)
	}
	if len(rest) > 0 {
		c.t.Fatalf("server sent %q after its last reply", rest)
	}
}

// session opens a session up to the 354 of DATA.
func (c *smtpClient) toData() {
	c.t.Helper()
	c.cmd("EHLO client.test", "250 ")
	c.cmd("MAIL FROM:<a@org.test>", "250 ")
	c.cmd("RCPT TO:<b@dest.test>", "250 ")
	c.cmd("DATA", "354 ")
}

func TestBareLineEndingInCommandClosesSession(t *testing.T) {
	for name, line := range map[string]string{
		"bare LF ends MAIL":      "MAIL FROM:<a@org.test>\nRCPT TO:<b@dest.test>\r\n",
		"bare CR inside RCPT":    "RCPT TO:<b@dest.test>\rDATA\r\n",
		"bare LF after NOOP":     "NOOP\n",
		"LF CR instead of CRLF":  "NOOP\n\r",
		"bare LF inside EHLO":    "EHLO a\nMAIL FROM:<x@org.test>\r\n",
		"CR CR LF after a RCPT":  "RCPT TO:<b@dest.test>\r\r\n",
		"bare LF after DATA cmd": "DATA\n",
	} {
		t.Run(name, func(t *testing.T) {
			f := startInbound(t, testInboundConfig(t), false)
			c := dialSMTP(t, f.addr)
			c.cmd("EHLO client.test", "250 ")
			if !strings.HasPrefix(line, "MAIL") && !strings.HasPrefix(line, "EHLO") {
				c.cmd("MAIL FROM:<a@org.test>", "250 ")
			}
			c.send(line)
			c.expect("500 5.5.2")
			c.expectClosed()
			if f.spool.count() != 0 {
				t.Error("a message was spooled")
			}
		})
	}
}

func TestControlCharactersInEnvelopeRefused(t *testing.T) {
	f := startInbound(t, testInboundConfig(t), false)
	c := dialSMTP(t, f.addr)
	c.cmd("EHLO client.test", "250 ")
	c.cmd("MAIL FROM:<a\x01b@org.test>", "501 5.1.3")
	c.cmd("MAIL FROM:<a\x00b@org.test>", "501 5.1.3")
	c.cmd("NOOP\x00RSET", "501 5.5.2")
	c.cmd("MAIL FROM:<\"a\x1bb\"@org.test>", "501 5.1.3")
	c.cmd("MAIL FROM:<a@org.test>", "250 ")
	c.cmd("RCPT TO:<b\x7f@dest.test>", "501 5.1.3")
	c.cmd("RCPT TO:<b@dest.test\x00>", "501 5.1.3")
	c.cmd("RCPT TO:<b@dest\x08.test>", "501 5.1.3")
	c.cmd("RCPT TO:<b@[127.0.0.1]>", "553 5.1.3")
	c.cmd("RCPT TO:<b@dest.test>", "250 ")
}

func TestNULInContentRefused(t *testing.T) {
	f := startInbound(t, testInboundConfig(t), false)
	c := dialSMTP(t, f.addr)
	c.toData()
	c.send("Subject: a\r\n\r\nhello\x00world\r\n.\r\n")
	c.expect("554 5.6.0")
	c.cmd("NOOP", "250 ") // still in step

	c.cmd("MAIL FROM:<a@org.test>", "250 ")
	c.cmd("RCPT TO:<b@dest.test>", "250 ")
	body := "Subject: a\r\n\r\nx\x00y\r\n"
	c.send("BDAT " + strconv.Itoa(len(body)) + " LAST\r\n" + body)
	c.expect("554 5.6.0")
	c.cmd("NOOP", "250 ")
	if f.spool.count() != 0 {
		t.Error("a message with NUL was spooled")
	}
}

// TestSmugglingVariantsStayInsideTheMessage sends the end-of-data forms
// of the SMTP smuggling research, each followed by a second message that
// a lenient server would accept. Only CRLF "." CRLF ends the data: the
// message is refused as a whole and the smuggled one never runs.
func TestSmugglingVariantsStayInsideTheMessage(t *testing.T) {
	smuggled := "MAIL FROM:<ceo@org.test>\r\nRCPT TO:<victim@dest.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nwire money\r\n"
	for name, end := range map[string]string{
		"LF.LF":     "\n.\n",
		"LF.CRLF":   "\n.\r\n",
		"CR.CR":     "\r.\r",
		"CRLF.LF":   "\r\n.\n",
		"CR.CRLF":   "\r.\r\n",
		"CRLF.CR":   "\r\n.\r",
		"LF.CR":     "\n.\r",
		"NUL.CRLF":  "\r\n\x00.\r\n",
		"CRLF.NULL": "\r\n.\x00\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			f := startInbound(t, testInboundConfig(t), false)
			c := dialSMTP(t, f.addr)
			c.toData()
			c.send("Subject: real\r\n\r\nhello" + end + smuggled + "\r\n.\r\n")
			c.expect("554 5.6.")
			c.cmd("NOOP", "250 ")
			if n := f.spool.count(); n != 0 {
				t.Errorf("%d messages spooled, want 0", n)
			}
		})
	}
}

func TestEarlyTalkerIsRefused(t *testing.T) {
	cfg := testInboundConfig(t)
	cfg.TrustedNetworks = []string{"10.0.0.0/8"} // loopback is a stranger here
	cfg.GreetPause = config.Duration(time.Second)
	f := startInbound(t, cfg, false)

	conn, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte("EHLO hasty.test\r\n"))
	c := &smtpClient{t: t, conn: conn, r: bufio.NewReader(conn)}
	t.Cleanup(func() { conn.Close() })
	c.expect("554 5.5.1")
	c.expectClosed()

	polite := dialSMTP(t, f.addr) // waits for the 220
	polite.cmd("EHLO polite.test", "250 ")
}

func TestContentBeforeDataReplyIsRefused(t *testing.T) {
	f := startInbound(t, testInboundConfig(t), false)
	c := dialSMTP(t, f.addr)
	c.cmd("EHLO client.test", "250 ")
	c.send("MAIL FROM:<a@org.test>\r\nRCPT TO:<b@dest.test>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n")
	c.expect("250 ")
	c.expect("250 ")
	c.expect("554 5.5.0")
	c.expectClosed()
	if f.spool.count() != 0 {
		t.Error("spooled")
	}
}

func TestSTARTTLSCommandInjectionIsRefused(t *testing.T) {
	f := startInbound(t, testInboundConfig(t), false)
	c := dialSMTP(t, f.addr)
	c.cmd("EHLO client.test", "250 ")
	c.send("STARTTLS\r\nMAIL FROM:<injected@org.test>\r\n")
	c.expect("554 5.5.0")
	c.expectClosed()
}

// TestDataTimeoutNeverRunsTheRestAsCommands: a client stalls mid-body
// past the idle timeout, then sends the end of the body followed by a
// second transaction. The server has hung up at the timeout; nothing
// after it is read, let alone executed.
func TestDataTimeoutNeverRunsTheRestAsCommands(t *testing.T) {
	cfg := testInboundConfig(t)
	cfg.IdleTimeout = config.Duration(500 * time.Millisecond)
	f := startInbound(t, cfg, false)
	c := dialSMTP(t, f.addr)
	c.toData()
	c.send("Subject: stalled\r\n\r\npart one\r\n")
	c.expect("421 4.4.2") // sent when the idle timeout fires
	c.conn.Write([]byte(".\r\nMAIL FROM:<evil@org.test>\r\nRCPT TO:<victim@dest.test>\r\nDATA\r\nSubject: evil\r\n\r\nx\r\n.\r\n"))
	c.expectClosed()
	if n := f.spool.count(); n != 0 {
		t.Errorf("%d messages spooled, want 0", n)
	}
}

// TestSlowSteadyUploadIsNotCutOff: the idle timeout is per read; a body
// that takes longer than it but keeps coming is accepted.
func TestSlowSteadyUploadIsNotCutOff(t *testing.T) {
	cfg := testInboundConfig(t)
	cfg.IdleTimeout = config.Duration(2 * time.Second)
	f := startInbound(t, cfg, false)
	c := dialSMTP(t, f.addr)
	c.toData()
	c.send("Subject: slow\r\n\r\n")
	for i := 0; i < 30; i++ { // 30 × 100 ms: well past the idle timeout, each gap far inside it
		time.Sleep(100 * time.Millisecond)
		c.send("a steady line\r\n")
	}
	c.send(".\r\n")
	c.expect("250 2.0.0 Ok: queued as")
}

func TestAddressesAreCanonicalAndQuotedSafely(t *testing.T) {
	f := startInbound(t, testInboundConfig(t), false)
	c := dialSMTP(t, f.addr)
	c.cmd("EHLO client.test", "250 ")
	c.cmd(`MAIL FROM:<"> ENVID=x"@Tenant.Example>`, "250 ")
	c.cmd("RCPT TO:<Bob@Partner.Example.>", "250 ")
	c.cmd(`RCPT TO:<"carol"@PARTNER.example>`, "250 ")
	c.cmd("DATA", "354 ")
	c.send("Subject: x\r\n\r\nx\r\n.\r\n")
	c.expect("250 ")
	f.spool.mu.Lock()
	defer f.spool.mu.Unlock()
	env := f.spool.envs[0]
	if env.From != `"> ENVID=x"@tenant.example` {
		t.Errorf("sender spooled as %q", env.From)
	}
	if strings.Join(env.Recipients, ",") != "Bob@partner.example,carol@partner.example" {
		t.Errorf("recipients spooled as %q", env.Recipients)
	}
}

func TestByteBudgetRefusesWhatDoesNotFit(t *testing.T) {
	cfg := testInboundConfig(t)
	cfg.MaxMessageBytes = 1 << 20
	cfg.MaxBytesInFlight = 600 << 10
	f := startInbound(t, cfg, false)

	c := dialSMTP(t, f.addr)
	c.cmd("EHLO client.test", "250 ")
	c.cmd("MAIL FROM:<a@org.test> SIZE=900000", "452 4.3.1")

	// A holds 400 KiB of the budget mid-body; B's 400 KiB does not fit.
	line := strings.Repeat("x", 998) + "\r\n"
	a := dialSMTP(t, f.addr)
	a.toData()
	a.send("Subject: a\r\n\r\n" + strings.Repeat(line, 400))
	// B starts only once the server holds A's bytes, or B could take the
	// budget first and A be the one refused.
	for deadline := time.Now().Add(10 * time.Second); f.srv.budget.free() > (600-390)<<10; {
		if time.Now().After(deadline) {
			t.Fatalf("A's body never took its budget: %d free", f.srv.budget.free())
		}
		time.Sleep(5 * time.Millisecond)
	}
	b := dialSMTP(t, f.addr)
	b.toData()
	b.send("Subject: b\r\n\r\n" + strings.Repeat(line, 400) + ".\r\n")
	b.expect("452 4.3.1")
	b.cmd("NOOP", "250 ")
	a.send(".\r\n")
	a.expect("250 ")
	// With A done, the budget is free again.
	b.cmd("MAIL FROM:<a@org.test>", "250 ")
	b.cmd("RCPT TO:<b@dest.test>", "250 ")
	b.cmd("DATA", "354 ")
	b.send("Subject: b\r\n\r\n" + strings.Repeat(line, 400) + ".\r\n")
	b.expect("250 ")
}

func TestLowDiskRefusesMail(t *testing.T) {
	cfg := testInboundConfig(t)
	cfg.MinFreeDiskBytes = 1 << 60
	f := startInboundWith(t, cfg, func(o *Options) { o.SpoolDir = t.TempDir() })
	c := dialSMTP(t, f.addr)
	c.cmd("EHLO client.test", "250 ")
	c.cmd("MAIL FROM:<a@org.test>", "452 4.3.1")
}

func TestSlotsReservedForTrustedNetworks(t *testing.T) {
	cfg := testInboundConfig(t)
	cfg.TrustedNetworks = []string{"127.0.0.1/32"}
	cfg.MaxConnections = 4 // one kept for trusted networks
	cfg.MaxConnectionsPerIP = 10
	cfg.GreetPause = 0
	f := startInbound(t, cfg, false)
	stranger := func() net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
		conn, err := d.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	for range 3 {
		newSMTPClient(t, stranger())
	}
	over := &smtpClient{t: t, conn: stranger()}
	over.r = bufio.NewReader(over.conn)
	over.expect("421 4.7.0")
	dialSMTP(t, f.addr).cmd("NOOP", "250 ") // the trusted client still gets in
}

func TestClientKeyCountsIPv6By64(t *testing.T) {
	a := clientKey(netip.MustParseAddr("2001:db8:1:2:aaaa::1"))
	b := clientKey(netip.MustParseAddr("2001:db8:1:2:bbbb::9"))
	other := clientKey(netip.MustParseAddr("2001:db8:1:3::1"))
	if a != b || a == other {
		t.Errorf("keys %v %v %v: one /64 must be one client", a, b, other)
	}
	if v4 := netip.MustParseAddr("192.0.2.7"); clientKey(v4) != v4 {
		t.Error("IPv4 addresses are their own key")
	}
}

// TestAuthFailuresAreLimitedAcrossConnections: a guesser that reconnects
// after each closed session is refused AUTH, even with the right
// password, once its address has failed too often.
func TestAuthFailuresAreLimitedAcrossConnections(t *testing.T) {
	cfg := testInboundConfig(t)
	cfg.Auth.Users = []config.User{{Username: "alice", PasswordHash: testHash(t, "s3cret")}}
	f := startInbound(t, cfg, false)
	bad := "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00alice\x00guess"))
	failures := 0
	for failures < authFailuresPerWindow {
		c := dialSMTP(t, f.addr)
		c.cmd("EHLO client.test", "250 ")
		c.startTLS()
		c.cmd("EHLO client.test", "250 ")
		for i := 0; i < maxAuthFailures && failures < authFailuresPerWindow; i++ {
			failures++
			want := "535 5.7.8"
			if i == maxAuthFailures-1 {
				want = "421 4.7.0"
			}
			c.cmd(bad, want)
		}
	}
	c := dialSMTP(t, f.addr)
	c.cmd("EHLO client.test", "250 ")
	c.startTLS()
	c.cmd("EHLO client.test", "250 ")
	c.cmd("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00alice\x00s3cret")), "454 4.7.0")
}

// TestUnknownUserCostsTheSlowestHash: the decoy an unknown user is
// checked against is the most expensive configured hash, so a fast hash
// among the users does not make unknown names cheap to spot.
func TestUnknownUserCostsTheSlowestHash(t *testing.T) {
	slow, err := config.HashPassword("pw") // the production cost
	if err != nil {
		t.Fatal(err)
	}
	cfg := testInboundConfig(t)
	cfg.Auth.Users = []config.User{{Username: "fast", PasswordHash: testHash(t, "pw")}, {Username: "slow", PasswordHash: slow}}
	s, err := New(Options{Config: cfg, Spool: &fakeSpool{}})
	if err != nil {
		t.Fatal(err)
	}
	if s.set.Load().decoyHash() != slow {
		t.Error("the decoy is not the slowest hash")
	}
}

// TestHugeHeaderIsRefused: a header of millions of tiny fields is
// refused before anything parses it, and the session goes on.
func TestHugeHeaderIsRefused(t *testing.T) {
	f := startInbound(t, testInboundConfig(t), false)
	c := dialSMTP(t, f.addr)
	c.toData()
	c.send("Subject: many fields\r\n" + strings.Repeat("X:\r\n", 400_000) + "\r\nbody\r\n.\r\n")
	c.expect("552 5.3.4")
	c.cmd("NOOP", "250 ")
	if f.spool.count() != 0 {
		t.Error("spooled")
	}
}

// TestBDATBadSizeClosesSession: a chunk size that is not all digits
// cannot be read past, so the connection ends. It must not be taken for
// "BDAT 0" (which would commit the message so far and read the chunk's
// octets as commands).
func TestBDATBadSizeClosesSession(t *testing.T) {
	for _, size := range []string{"5x", "abc", "+5", "-0", "99999999999999999999"} {
		t.Run(size, func(t *testing.T) {
			f := startInbound(t, testInboundConfig(t), false)
			c := dialSMTP(t, f.addr)
			c.cmd("EHLO client.test", "250 ")
			c.cmd("MAIL FROM:<a@org.test>", "250 ")
			c.cmd("RCPT TO:<b@dest.test>", "250 ")
			c.send("BDAT " + size + " LAST\r\nNOOP\r\n")
			c.expect("501 5.5.4")
			c.expectClosed()
			if n := f.spool.count(); n != 0 {
				t.Errorf("%d messages spooled, want 0", n)
			}
		})
	}
}

// TestBDATLongLineRefusedAsInDATA: the line length limit that DATA
// enforces holds for BDAT content too, also when the long line is split
// across chunks; otherwise CHUNKING is a way around it.
func TestBDATLongLineRefusedAsInDATA(t *testing.T) {
	f := startInbound(t, testInboundConfig(t), false)
	c := dialSMTP(t, f.addr)
	long := "Subject: x\r\n\r\n" + strings.Repeat("y", 5000) + "\r\n"
	c.toData()
	c.send(long + ".\r\n")
	c.expect("554 5.6.0")

	c.cmd("MAIL FROM:<a@org.test>", "250 ")
	c.cmd("RCPT TO:<b@dest.test>", "250 ")
	c.send("BDAT " + strconv.Itoa(len(long)) + " LAST\r\n" + long)
	c.expect("554 5.6.0")

	c.cmd("MAIL FROM:<a@org.test>", "250 ")
	c.cmd("RCPT TO:<b@dest.test>", "250 ")
	half := len(long) / 2
	c.send("BDAT " + strconv.Itoa(half) + "\r\n" + long[:half])
	c.expect("250 ")
	c.send("BDAT " + strconv.Itoa(len(long)-half) + " LAST\r\n" + long[half:])
	c.expect("554 5.6.0")
	c.cmd("NOOP", "250 ")
	if n := f.spool.count(); n != 0 {
		t.Errorf("%d messages spooled, want 0", n)
	}
}

// TestContentAfterRefusedDataIsRefused: content sent without waiting
// for a 354 is refused and the connection closed also when DATA itself
// fails (here: no valid recipient); otherwise the body's lines run as
// commands.
func TestContentAfterRefusedDataIsRefused(t *testing.T) {
	f := startInbound(t, testInboundConfig(t), false)
	c := dialSMTP(t, f.addr)
	c.cmd("EHLO client.test", "250 ")
	c.send("MAIL FROM:<a@org.test>\r\nRCPT TO:<b@[192.0.2.1]>\r\nDATA\r\n" +
		"MAIL FROM:<a@org.test>\r\nRCPT TO:<victim@dest.test>\r\nBDAT 5 LAST\r\nhello")
	c.expect("250 ")
	c.expect("553 ")
	c.expect("554 5.5.0")
	c.expectClosed()
	if n := f.spool.count(); n != 0 {
		t.Errorf("%d messages spooled, want 0", n)
	}
}

// TestLastReplyIsSentWithPipelinedInput: replies held back because more
// pipelined input was waiting (RFC 2920) are still sent when the session
// ends on that command: a 221 to QUIT, a 421 while shutting down.
func TestLastReplyIsSentWithPipelinedInput(t *testing.T) {
	f := startInbound(t, testInboundConfig(t), false)
	c := dialSMTP(t, f.addr)
	c.cmd("EHLO client.test", "250 ")
	c.send("NOOP\r\nQUIT\r\nNOOP\r\n")
	c.expect("250 ")
	c.expect("221 ")
	c.expectClosed()

	// A transaction in flight keeps the server draining; a new MAIL with
	// more commands behind it gets its 421.
	busy := dialSMTP(t, f.addr)
	busy.cmd("EHLO client.test", "250 ")
	busy.cmd("MAIL FROM:<a@org.test>", "250 ")
	late := dialSMTP(t, f.addr)
	late.cmd("EHLO client.test", "250 ")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	go f.srv.Shutdown(ctx)
	for !f.srv.isDraining() {
		time.Sleep(time.Millisecond)
	}
	late.send("NOOP\r\nMAIL FROM:<a@org.test>\r\nRCPT TO:<b@dest.test>\r\n")
	late.expect("250 ")
	late.expect("421 4.3.2")
	late.expectClosed()
}

// TestNULCommandsCountAsBadCommands: lines with NUL are answered 501
// and count towards the bad command limit like any other error, so a
// client cannot send them for ever.
func TestNULCommandsCountAsBadCommands(t *testing.T) {
	f := startInbound(t, testInboundConfig(t), false)
	c := dialSMTP(t, f.addr)
	for range maxBadCommands - 1 {
		c.cmd("NOOP\x00", "501 5.5.2")
	}
	c.cmd("NOOP\x00", "421 4.7.0")
	c.expectClosed()
}

// TestDeclaredSizeIsReservedBeforeTheBody: two clients declare 500 KB
// against a 600 KiB budget; the second is refused at DATA, before it
// sends a byte of its body, and taken once the first is done.
func TestDeclaredSizeIsReservedBeforeTheBody(t *testing.T) {
	cfg := testInboundConfig(t)
	cfg.MaxMessageBytes = 1 << 20
	cfg.MaxBytesInFlight = 600 << 10
	f := startInbound(t, cfg, false)
	a, b := dialSMTP(t, f.addr), dialSMTP(t, f.addr)
	for _, c := range []*smtpClient{a, b} {
		c.cmd("EHLO client.test", "250 ")
		c.cmd("MAIL FROM:<a@org.test> SIZE=500000", "250 ")
		c.cmd("RCPT TO:<b@dest.test>", "250 ")
	}
	a.cmd("DATA", "354 ")
	b.cmd("DATA", "452 4.3.1")
	a.send("Subject: a\r\n\r\n" + strings.Repeat(strings.Repeat("x", 998)+"\r\n", 400) + ".\r\n")
	a.expect("250 ")
	b.cmd("DATA", "354 ")
	b.send("Subject: b\r\n\r\nsmall\r\n.\r\n")
	b.expect("250 ")
}

// TestServeAfterShutdownAcceptsNothing: a stop that comes before the
// accept loop has started (a node stopped during its start) closes the
// listener that loop is given, so the port is not left open and Serve
// returns.
func TestServeAfterShutdownAcceptsNothing(t *testing.T) {
	s, err := New(Options{Config: testInboundConfig(t), Spool: &fakeSpool{}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	select {
	case <-served:
	case <-time.After(10 * time.Second):
		t.Fatal("Serve after Shutdown is still accepting")
	}
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), 2*time.Second); err == nil {
		c.Close()
		t.Error("the port still takes connections after the stop")
	}
}
