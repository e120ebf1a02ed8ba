package gateway_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/mail"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/gateway/audit"
	"github.com/sealgate/sealgate/internal/testutil"
	"github.com/sealgate/sealgate/queue"
)

// escrowE2E is a gateway with the portal on, its destination sinks
// and a browser-like client (cookie jar, no redirects followed blindly).
type escrowE2E struct {
	*e2e
	portal string // https://127.0.0.1:port
	dest   *testutil.SMTPSink
	org    *testutil.SMTPSink // the sender's own organisation, for replies
}

func newEscrowE2E(t *testing.T, extra string) *escrowE2E {
	return newEscrowE2EWith(t, testutil.NewCA(t), extra)
}

// newEscrowE2EWith is newEscrowE2E with a CA the test already made
// (the portal's certificate comes from it).
func newEscrowE2EWith(t *testing.T, ca *testutil.CA, extra string) *escrowE2E {
	port := testutil.FreePort(t)
	portal := fmt.Sprintf("https://127.0.0.1:%d", port)
	e := newE2EWith(t, testutil.NewDNSServer(t), ca, fmt.Sprintf(`escrow:
  organization: Clinic X
portal:
  listen: 127.0.0.1:%d
  public_url: %s
%s`, port, portal, extra))
	x := &escrowE2E{e2e: e, portal: portal}
	x.dest = e.destination("dest.test", "127.0.0.2", testutil.SinkOptions{TLS: true, CA: e.ca})
	x.org = e.destination("org.test", "127.0.0.3", testutil.SinkOptions{TLS: true, CA: e.ca})
	return x
}

func browser(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
}

// textParts returns the decoded text/* parts of a mail.
func textParts(t *testing.T, data []byte) []string {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, _ := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if !strings.HasPrefix(mt, "multipart/") {
		b, _ := io.ReadAll(msg.Body)
		return []string{string(b)}
	}
	var out []string
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err != nil {
			return out
		}
		b, _ := io.ReadAll(p)
		out = append(out, string(b))
	}
}

var (
	linkRE = regexp.MustCompile(`https://127\.0\.0\.1:\d+/m/[A-Za-z0-9_-]{43,}`)
	csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	codeRE = regexp.MustCompile(`\b(\d{8})\b`)
)

// noticeLink waits for the notice to rcpt and returns its link.
func (x *escrowE2E) noticeLink(t *testing.T, rcpt string) (string, testutil.SinkMessage) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range x.dest.Messages() {
			if len(m.To) == 1 && m.To[0] == rcpt && bytes.Contains(m.Data, []byte("Subject: You have a secure message")) {
				parts := textParts(t, m.Data)
				link := linkRE.FindString(strings.Join(parts, "\n"))
				if link == "" {
					t.Fatalf("notice without a link:\n%s", m.Data)
				}
				return link, m
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no notice for %s", rcpt)
	return "", testutil.SinkMessage{}
}

// codeFor waits for the n-th code mail to rcpt and returns the code.
func (x *escrowE2E) codeFor(t *testing.T, rcpt string, n int) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var codes []string
		for _, m := range x.dest.Messages() {
			if len(m.To) == 1 && m.To[0] == rcpt && bytes.Contains(m.Data, []byte("Subject: Your code for the secure message")) {
				if m.From != "" {
					t.Errorf("code mail with envelope sender %q, want the null sender", m.From)
				}
				codes = append(codes, codeRE.FindStringSubmatch(strings.Join(textParts(t, m.Data), ""))[1])
			}
		}
		if len(codes) >= n {
			return codes[n-1]
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no code mail %d for %s", n, rcpt)
	return ""
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func post(t *testing.T, c *http.Client, u string, form url.Values) (*http.Response, string) {
	t.Helper()
	resp, err := c.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("page without a CSRF field:\n%s", page)
	}
	return m[1]
}

// TestSecureToRecipientWithoutKeysIsEscrowedAndRead is the patient's
// path: [secure] to addresses with neither an OpenPGP key nor an
// S/MIME certificate goes through the default chain [pgp, smime,
// escrow] to a notice each (its own link), a code by mail, the message
// in the portal, the attachment byte for byte, and a reply back to the
// sender.
func TestSecureToRecipientWithoutKeysIsEscrowedAndRead(t *testing.T) {
	// Replies go by the policy like any message: this organisation wants
	// mail to itself over verified TLS.
	x := newEscrowE2E(t, "policy:\n  rules:\n    - name: to-us-verified\n      match: {to: [org.test]}\n      chain: [tls-verified]\n")
	pdf := pdfBytes()
	id := x.send("alice@org.test", []string{"bob@dest.test", "carol@dest.test"}, labMessage(pdf))
	m := x.waitState(id, "bob@dest.test", queue.StateDelivered)
	x.waitState(id, "carol@dest.test", queue.StateDelivered)
	if r := m.Recipients[0]; r.Method() != "escrow" {
		t.Errorf("delivered by %s, want escrow", r.Method())
	}
	if att := lastAttempt(m); att == nil || !strings.HasPrefix(att.Protection, "escrow: ") {
		t.Errorf("attempt record: %+v", att)
	}

	bobLink, notice := x.noticeLink(t, "bob@dest.test")
	carolLink, _ := x.noticeLink(t, "carol@dest.test")
	if bobLink == carolLink {
		t.Fatal("two recipients share one link")
	}
	for _, secret := range []string{"haemoglobin", "Lab results", "panel.pdf", "13.2"} {
		if bytes.Contains(notice.Data, []byte(secret)) {
			t.Errorf("the notice holds %q", secret)
		}
	}
	if notice.TLS == "" || !strings.Contains(strings.Join(textParts(t, notice.Data), ""), "Clinic X") {
		t.Errorf("notice over TLS %q, or without the organisation", notice.TLS)
	}
	for _, n := range x.dest.Messages() {
		if bytes.Contains(n.Data, []byte(strings.TrimPrefix(carolLink, x.portal))) && n.To[0] != "carol@dest.test" {
			t.Errorf("carol's link went to %v", n.To)
		}
	}

	c := browser(t)
	resp, page := get(t, c, bobLink)
	if resp.StatusCode != 200 || !strings.Contains(page, "Email me a code") || strings.Contains(page, "haemoglobin") {
		t.Fatalf("link page %d:\n%s", resp.StatusCode, page)
	}
	checkSecurityHeaders(t, resp)
	resp, page = post(t, c, bobLink+"/code", url.Values{"csrf": {csrfOf(t, page)}})
	if resp.StatusCode != 200 || !strings.Contains(page, "We have emailed a code to b…@dest.test") {
		t.Fatalf("code request %d:\n%s", resp.StatusCode, page)
	}
	code := x.codeFor(t, "bob@dest.test", 1)
	resp, page = post(t, c, bobLink+"/verify", url.Values{"csrf": {csrfOf(t, page)}, "code": {code}})
	if resp.StatusCode != 200 || !strings.Contains(page, "haemoglobin") || !strings.Contains(page, "<b>haemoglobin</b>") {
		t.Fatalf("message page %d:\n%s", resp.StatusCode, page)
	}
	cookies := resp.Request.Response.Header.Values("Set-Cookie")
	if len(cookies) == 0 || !strings.Contains(cookies[0], "__Host-sg-session=") || !strings.Contains(cookies[0], "HttpOnly") ||
		!strings.Contains(cookies[0], "Secure") || !strings.Contains(cookies[0], "SameSite=Strict") || !strings.Contains(cookies[0], "Path=/") {
		t.Errorf("session cookie %q", cookies)
	}

	// The session opens bob's message only, not carol's.
	if _, other := get(t, c, carolLink); strings.Contains(other, "haemoglobin") {
		t.Error("bob's session opened carol's link")
	}

	dl, data := get(t, c, bobLink+"/a/0")
	if cd := dl.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment") || !strings.Contains(cd, "panel.pdf") ||
		dl.Header.Get("Content-Type") != "application/pdf" {
		t.Errorf("download headers %v", dl.Header)
	}
	if sha256.Sum256([]byte(data)) != sha256.Sum256(pdf) {
		t.Error("the downloaded attachment differs from the original")
	}

	// Reply, with a file.
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.WriteField("csrf", csrfOf(t, page))
	mw.WriteField("text", "Thank you, doctor. See you Tuesday.")
	fw, _ := mw.CreateFormFile("files", "question.txt")
	fw.Write([]byte("a question"))
	mw.Close()
	rresp, err := c.Post(bobLink+"/reply", mw.FormDataContentType(), &body)
	if err != nil {
		t.Fatal(err)
	}
	rpage, _ := io.ReadAll(rresp.Body)
	rresp.Body.Close()
	if !strings.Contains(string(rpage), "Your reply was sent securely.") {
		t.Fatalf("reply %d:\n%s", rresp.StatusCode, rpage)
	}
	reply := x.org.WaitMessages(t, 1, 20*time.Second)[0]
	if reply.To[0] != "alice@org.test" || !bytes.Contains(reply.Data, []byte("In-Reply-To: <lab-results@org.test>")) ||
		!bytes.Contains(reply.Data, []byte("Reply-To: bob@dest.test")) || reply.TLS == "" {
		t.Errorf("reply at the sender's organisation (TLS %q):\n%s", reply.TLS, reply.Data)
	}
	if !strings.Contains(strings.Join(textParts(t, reply.Data), ""), "See you Tuesday") {
		t.Errorf("reply text missing:\n%s", reply.Data)
	}
	replyChain := ""
	if msgs, err := x.gw.Store().List(); err == nil {
		for _, m := range msgs {
			if len(m.Recipients) == 1 && m.Recipients[0].Address == "alice@org.test" && m.Envelope.From != "alice@org.test" {
				replyChain = strings.Join(m.Recipients[0].Chain, ",") + " by " + strings.Join(m.Recipients[0].Rules, ",")
			}
		}
	}
	if replyChain != "tls-verified by to-us-verified" {
		t.Errorf("the reply's chain: %q, want the policy's tls-verified by rule to-us-verified", replyChain)
	}

	// The access log.
	entries, err := x.gw.Escrow().ForQueueID(id)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, en := range entries {
		if en.Recipient.Address != "bob@dest.test" {
			continue
		}
		for _, ev := range en.Recipient.Events {
			kinds = append(kinds, ev.Kind)
		}
	}
	for _, want := range []string{queue.EscrowNoticeSent, queue.EscrowCodeSent, queue.EscrowOpened, queue.EscrowDownloaded, queue.EscrowReplied} {
		if !strings.Contains(strings.Join(kinds, ","), want) {
			t.Errorf("access log %v lacks %q", kinds, want)
		}
	}
	// The same access events are in the audit trail, with the client.
	opened, err := audit.New(x.gw.Store(), nil, nil).Search(audit.Filter{Recipient: "bob@dest.test", Type: "escrow.opened"}, 0)
	if err != nil || len(opened) != 1 || !strings.Contains(opened[0].Detail, "from 127.0.0.1") || opened[0].QueueID == "" {
		t.Errorf("escrow opening in the audit trail: %+v, %v", opened, err)
	}

	// No plaintext of the message in the spool file.
	file, err := os.ReadFile(x.gw.Config().SpoolDBFile())
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"haemoglobin", "panel.pdf", strings.TrimPrefix(bobLink, x.portal+"/m/")} {
		if bytes.Contains(file, []byte(secret)) {
			t.Errorf("the spool file holds %q in clear", secret)
		}
	}
}

func checkSecurityHeaders(t *testing.T, resp *http.Response) {
	t.Helper()
	h := resp.Header
	csp := h.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "unsafe-inline") ||
		strings.Contains(csp, "script-src") {
		t.Errorf("CSP %q", csp)
	}
	for k, v := range map[string]string{"Strict-Transport-Security": "max-age=", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"} {
		if !strings.Contains(h.Get(k), v) {
			t.Errorf("%s: %q", k, h.Get(k))
		}
	}
}

// TestSenderRevokesThroughTheReceipt is the clinic's "unsend": with
// escrow.sender_receipt the sender gets one receipt at their own
// organisation, proves their address with a code mailed there, and
// withdraws the message; the recipient's link then gets the neutral
// page, and the access log says the sender revoked it.
func TestSenderRevokesThroughTheReceipt(t *testing.T) {
	x := newEscrowE2E(t, "escrow:\n  sender_receipt: true\n")
	id := x.send("alice@org.test", []string{"bob@dest.test", "carol@dest.test"}, labMessage(pdfBytes()))
	x.waitState(id, "bob@dest.test", queue.StateDelivered)
	x.waitState(id, "carol@dest.test", queue.StateDelivered)
	bobLink, _ := x.noticeLink(t, "bob@dest.test")

	receipt := x.org.WaitMessages(t, 1, 20*time.Second)[0]
	if receipt.From != "" || receipt.To[0] != "alice@org.test" || receipt.TLS == "" ||
		!bytes.Contains(receipt.Data, []byte("In-Reply-To: <lab-results@org.test>")) {
		t.Errorf("receipt (envelope %q → %v, TLS %q):\n%s", receipt.From, receipt.To, receipt.TLS, receipt.Data)
	}
	for _, secret := range []string{"haemoglobin", "Lab results", "panel.pdf"} {
		if bytes.Contains(receipt.Data, []byte(secret)) {
			t.Errorf("the receipt holds %q", secret)
		}
	}
	senderLink := regexp.MustCompile(`https://127\.0\.0\.1:\d+/s/[A-Za-z0-9_-]{43}`).FindString(string(receipt.Data))
	if senderLink == "" {
		t.Fatalf("receipt without a sender link:\n%s", receipt.Data)
	}

	c := browser(t)
	_, page := get(t, c, senderLink)
	_, page = post(t, c, senderLink+"/code", url.Values{"csrf": {csrfOf(t, page)}})
	codeMails := x.org.WaitMessages(t, 2, 20*time.Second)
	code := codeRE.FindStringSubmatch(strings.Join(textParts(t, codeMails[1].Data), ""))[1]
	resp, page := post(t, c, senderLink+"/verify", url.Values{"csrf": {csrfOf(t, page)}, "code": {code}})
	if resp.StatusCode != 200 || !strings.Contains(page, "bob@dest.test") || !strings.Contains(page, "Withdraw the message for everyone") {
		t.Fatalf("sender page %d:\n%s", resp.StatusCode, page)
	}
	resp, page = post(t, c, senderLink+"/revoke", url.Values{"csrf": {csrfOf(t, page)}})
	if resp.StatusCode != 200 || !strings.Contains(page, "The message was withdrawn") {
		t.Fatalf("revocation %d:\n%s", resp.StatusCode, page)
	}

	resp, page = get(t, browser(t), bobLink)
	if resp.StatusCode != 404 || !strings.Contains(page, "This message is not available") {
		t.Errorf("bob's link after the sender revoked: %d\n%s", resp.StatusCode, page)
	}
	receipts := 0
	for _, m := range x.org.Messages() {
		if bytes.Contains(m.Data, []byte("Subject: Receipt:")) {
			receipts++
		}
	}
	if receipts != 1 {
		t.Errorf("%d receipts for one message to two recipients, want 1", receipts)
	}
	entries, err := x.gw.Escrow().ForQueueID(id)
	if err != nil || len(entries) != 2 {
		t.Fatalf("access records %v, %v", entries, err)
	}
	for _, en := range entries {
		if en.Message.State(time.Now()) != "revoked" || en.Message.RevokedBy != "sender" {
			t.Errorf("%s: state %s, revoked by %q", en.Recipient.ID, en.Message.State(time.Now()), en.Message.RevokedBy)
		}
		last := en.Recipient.Events[len(en.Recipient.Events)-1]
		if last.Kind != queue.EscrowRevoked || last.Detail != "message revoked by sender alice@org.test" || last.Client != "127.0.0.1" {
			t.Errorf("%s: last event %+v", en.Recipient.Address, last)
		}
	}
}

// TestSecurityReceiptSaysWhetherEscrowWasOpened: a security receipt for
// escrowed mail says, per recipient, whether the message had been opened
// in the portal when it was written (here: not yet), from the escrow
// store, in its JSON facts and in words.
func TestSecurityReceiptSaysWhetherEscrowWasOpened(t *testing.T) {
	x := newEscrowE2E(t, "policy:\n  rules:\n    - name: receipts\n      match: {from: [alice@org.test]}\n      receipt: true\n      continue: true\n")
	id := x.send("alice@org.test", []string{"bob@dest.test"}, labMessage(pdfBytes()))
	x.waitState(id, "bob@dest.test", queue.StateDelivered)
	var receipt []byte
	deadline := time.Now().Add(20 * time.Second)
	for receipt == nil {
		for _, m := range x.org.Messages() {
			if bytes.Contains(m.Data, []byte("Subject: Security receipt")) {
				receipt = m.Data
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no security receipt; the sender got %d mails", len(x.org.Messages()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(receipt))
	if err != nil {
		t.Fatal(err)
	}
	_, params, _ := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var text, facts string
	for {
		p, err := mr.NextPart()
		if err != nil {
			break
		}
		data, _ := io.ReadAll(p)
		if strings.HasPrefix(p.Header.Get("Content-Type"), "application/json") {
			plain, _ := base64.StdEncoding.DecodeString(strings.ReplaceAll(string(data), "\r\n", ""))
			facts = string(plain)
		} else {
			text += string(data)
		}
	}
	if !strings.Contains(facts, `"escrow_opened": false`) || !strings.Contains(text, "had not opened it yet") {
		t.Errorf("receipt of an escrowed message not yet opened:\n%s\n%s", text, facts)
	}
}
