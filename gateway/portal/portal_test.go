package portal

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealgate/sealgate/queue"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// codeSpool keeps the mails the portal queues.
type codeSpool struct {
	mu    sync.Mutex
	mails []string
}

func (s *codeSpool) Enqueue(_ context.Context, _ queue.Envelope, body []byte) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mails = append(s.mails, string(body))
	return "id", nil
}

var codeRE = regexp.MustCompile(`\b(\d{8})\b`)

func (s *codeSpool) lastCode(t *testing.T) string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.mails) == 0 {
		t.Fatal("no code mail")
	}
	return codeRE.FindStringSubmatch(s.mails[len(s.mails)-1])[1]
}

type fixture struct {
	t      *testing.T
	srv    *httptest.Server
	escrow *queue.Escrow
	spool  *codeSpool
	clock  *clock
}

const lab = "From: Alice <alice@org.test>\r\nTo: bob@dest.test\r\nSubject: Lab\r\nMessage-ID: <m1@org.test>\r\n" +
	"Content-Type: text/plain\r\n\r\nhaemoglobin 13.2\r\n"

func newFixture(t *testing.T) *fixture {
	dir := t.TempDir()
	c := &clock{t: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
	st, err := queue.Open(queue.Options{Path: filepath.Join(dir, "s.db"), KeyFile: filepath.Join(dir, "s.key"), Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e, err := st.OpenEscrow(queue.EscrowOptions{KeyFile: filepath.Join(dir, "e.key")})
	if err != nil {
		t.Fatal(err)
	}
	sp := &codeSpool{}
	f := &fixture{t: t, escrow: e, spool: sp, clock: c}
	f.srv = httptest.NewUnstartedServer(nil)
	f.srv.StartTLS()
	f.srv.Config.Handler = New(Options{Store: e, Senders: e, Spool: sp, PublicURL: f.srv.URL, MailFrom: "no-reply@gw.test",
		Hostname: "gw.test", Organization: "Clinic X", Now: c.now}).Handler()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) deposit(queueID, rcpt, body string) string {
	_, tok, err := f.escrow.Deposit(queue.EscrowDeposit{QueueID: queueID, EnvelopeFrom: "alice@org.test", Recipient: rcpt}, []byte(body))
	if err != nil {
		f.t.Fatal(err)
	}
	return tok
}

func (f *fixture) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	c := *f.srv.Client() // a browser of its own: the server's client is shared
	c.Jar = jar
	return &c
}

func do(t *testing.T, c *http.Client, method, u string, form url.Values) (*http.Response, string) {
	t.Helper()
	var resp *http.Response
	var err error
	if method == "GET" {
		resp, err = c.Get(u)
	} else {
		resp, err = c.PostForm(u, form)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrf(t *testing.T, page string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF field:\n%s", page)
	}
	return m[1]
}

// open goes through the code exchange and returns the message page.
func (f *fixture) open(c *http.Client, tok string) string {
	f.t.Helper()
	link := f.srv.URL + "/m/" + tok
	_, page := do(f.t, c, "GET", link, nil)
	_, page = do(f.t, c, "POST", link+"/code", url.Values{"csrf": {csrf(f.t, page)}})
	_, page = do(f.t, c, "POST", link+"/verify", url.Values{"csrf": {csrf(f.t, page)}, "code": {f.spool.lastCode(f.t)}})
	return page
}

func TestGoneIsOnePageForUnknownExpiredRevoked(t *testing.T) {
	f := newFixture(t)
	c := f.client()
	unknownResp, unknown := do(t, c, "GET", f.srv.URL+"/m/"+queue.NewEscrowToken(), nil)
	if unknownResp.StatusCode != 404 || !strings.Contains(unknown, "This message is not available") {
		t.Fatalf("unknown token %d:\n%s", unknownResp.StatusCode, unknown)
	}
	revoked := f.deposit("q1", "bob@dest.test", lab)
	en, _ := f.escrow.Lookup(revoked)
	if err := f.escrow.Revoke(en.Message.ID, "alice@org.test"); err != nil {
		t.Fatal(err)
	}
	expired := f.deposit("q2", "bob@dest.test", lab)
	f.clock.add(31 * 24 * time.Hour)
	for name, tok := range map[string]string{"revoked": revoked, "expired": expired} {
		for _, path := range []string{"", "/a/0"} {
			resp, page := do(t, c, "GET", f.srv.URL+"/m/"+tok+path, nil)
			if resp.StatusCode != unknownResp.StatusCode || page != unknown {
				t.Errorf("%s%s: %d, a page unlike the unknown token's:\n%s", name, path, resp.StatusCode, page)
			}
		}
		resp, page := do(t, c, "POST", f.srv.URL+"/m/"+tok+"/code", url.Values{})
		if resp.StatusCode != 404 || page != unknown {
			t.Errorf("%s: code request %d", name, resp.StatusCode)
		}
	}
	if len(f.spool.mails) != 0 {
		t.Error("a code was mailed for a dead link")
	}
}

func TestCSRFAndOrigin(t *testing.T) {
	f := newFixture(t)
	tok := f.deposit("q1", "bob@dest.test", lab)
	link := f.srv.URL + "/m/" + tok
	c := f.client()
	_, page := do(t, c, "GET", link, nil)
	good := csrf(t, page)
	forged := "x" + good[1:]
	if forged == good { // one token in 64 starts with x
		forged = "y" + good[1:]
	}

	other := f.deposit("q2", "carol@dest.test", lab)
	for name, tc := range map[string]struct {
		client            *http.Client
		url               string
		form              url.Values
		origin, fetchSite string
	}{
		"no token":               {c, link + "/code", url.Values{}, "", ""},
		"forged token":           {c, link + "/code", url.Values{"csrf": {forged}}, "", ""},
		"another link's token":   {c, f.srv.URL + "/m/" + other + "/code", url.Values{"csrf": {good}}, "", ""},
		"another browser":        {f.client(), link + "/code", url.Values{"csrf": {good}}, "", ""},
		"cross-site origin":      {c, link + "/code", url.Values{"csrf": {good}}, "https://evil.test", ""},
		"cross-site verify":      {c, link + "/verify", url.Values{"csrf": {good}, "code": {"12345678"}}, "https://evil.test", ""},
		"reply without a cookie": {f.client(), link + "/reply", url.Values{"csrf": {good}, "text": {"hi"}}, "", ""},
		// An opaque origin (a sandboxed frame, a data: URL) from
		// another site is "null" too; Fetch Metadata tells it apart.
		"null origin cross-site": {c, link + "/code", url.Values{"csrf": {good}}, "null", "cross-site"},
		"null origin same-site":  {c, link + "/code", url.Values{"csrf": {good}}, "null", "same-site"},
	} {
		req, _ := http.NewRequest("POST", tc.url, strings.NewReader(tc.form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if tc.origin != "" {
			req.Header.Set("Origin", tc.origin)
		}
		if tc.fetchSite != "" {
			req.Header.Set("Sec-Fetch-Site", tc.fetchSite)
		}
		resp, err := tc.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", name, resp.StatusCode)
		}
	}
	if len(f.spool.mails) != 0 {
		t.Errorf("a forged form sent %d code mails", len(f.spool.mails))
	}
	// The real form from the real origin passes.
	req, _ := http.NewRequest("POST", link+"/code", strings.NewReader(url.Values{"csrf": {good}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", f.srv.URL)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || len(f.spool.mails) != 1 {
		t.Errorf("the genuine form: %d, %d mails", resp.StatusCode, len(f.spool.mails))
	}
	// What a browser really sends for it: under Referrer-Policy:
	// no-referrer a form POST carries "Origin: null" (Fetch,
	// "serializing a request origin"), with Sec-Fetch-Site: same-origin.
	_, page = do(t, c, "GET", link, nil)
	req, _ = http.NewRequest("POST", link+"/code", strings.NewReader(url.Values{"csrf": {csrf(t, page)}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "null")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if resp, err = c.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || len(f.spool.mails) != 2 {
		t.Errorf("the genuine form as a browser sends it: %d, %d mails", resp.StatusCode, len(f.spool.mails))
	}
}

func TestCodeLockoutAndSession(t *testing.T) {
	f := newFixture(t)
	tok := f.deposit("q1", "bob@dest.test", lab)
	link := f.srv.URL + "/m/" + tok
	c := f.client()
	_, page := do(t, c, "GET", link, nil)
	_, page = do(t, c, "POST", link+"/code", url.Values{"csrf": {csrf(t, page)}})
	code := f.spool.lastCode(t)
	wrong := "00000000"
	if code == wrong {
		wrong = "11111111"
	}
	for i := 1; i <= 5; i++ {
		resp, p := do(t, c, "POST", link+"/verify", url.Values{"csrf": {csrf(t, page)}, "code": {wrong}})
		page = p
		if resp.StatusCode != http.StatusUnauthorized || strings.Contains(p, "haemoglobin") {
			t.Fatalf("wrong try %d: %d", i, resp.StatusCode)
		}
		if i < 5 && !strings.Contains(p, "Tries left: ") {
			t.Errorf("try %d does not say how many are left", i)
		}
	}
	if !strings.Contains(page, "Request a new one") {
		t.Errorf("after five wrong tries:\n%s", page)
	}
	resp, page := do(t, c, "POST", link+"/verify", url.Values{"csrf": {csrf(t, page)}, "code": {code}})
	if resp.StatusCode != http.StatusUnauthorized || strings.Contains(page, "haemoglobin") {
		t.Fatalf("the right code after lockout opened the message")
	}
	// A new code opens it; the session then ends after its lifetime.
	page = f.open(c, tok)
	if !strings.Contains(page, "haemoglobin 13.2") {
		t.Fatalf("message page:\n%s", page)
	}
	f.clock.add(16 * time.Minute)
	if _, page := do(t, c, "GET", link, nil); strings.Contains(page, "haemoglobin") {
		t.Error("the session outlived its lifetime")
	}
	en, _ := f.escrow.Lookup(tok)
	var kinds []string
	for _, ev := range en.Recipient.Events {
		kinds = append(kinds, ev.Kind)
	}
	if s := strings.Join(kinds, ","); !strings.Contains(s, queue.EscrowLocked) || strings.Count(s, queue.EscrowCodeFailed) < 6 {
		t.Errorf("events %v", kinds)
	}
}

func TestCodeRequestsAreRateLimited(t *testing.T) {
	f := newFixture(t)
	tok := f.deposit("q1", "bob@dest.test", lab)
	link := f.srv.URL + "/m/" + tok
	c := f.client()
	_, page := do(t, c, "GET", link, nil)
	var resp *http.Response
	for range 6 {
		resp, page = do(t, c, "POST", link+"/code", url.Values{"csrf": {csrf(t, page)}})
	}
	if resp.StatusCode != http.StatusTooManyRequests || len(f.spool.mails) != 5 {
		t.Errorf("sixth code request: %d, %d mails", resp.StatusCode, len(f.spool.mails))
	}
	// Per client address, across links.
	for i := range 10 {
		tok := f.deposit("r"+string(rune('a'+i)), "x@dest.test", lab)
		_, p := do(t, c, "GET", f.srv.URL+"/m/"+tok, nil)
		resp, _ = do(t, c, "POST", f.srv.URL+"/m/"+tok+"/code", url.Values{"csrf": {csrf(t, p)}})
	}
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("the eleventh code request from one address in an hour: %d", resp.StatusCode)
	}
}

func TestSecurityHeadersOnEveryResponse(t *testing.T) {
	f := newFixture(t)
	tok := f.deposit("q1", "bob@dest.test", lab)
	c := f.client()
	for _, path := range []string{"/", "/m/" + tok, "/m/nope", "/portal.css", "/m/" + tok + "/a/0"} {
		resp, _ := do(t, c, "GET", f.srv.URL+path, nil)
		h := resp.Header
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") ||
			strings.Contains(csp, "unsafe") {
			t.Errorf("%s: CSP %q", path, csp)
		}
		if h.Get("Strict-Transport-Security") == "" || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s: headers %v", path, h)
		}
	}
}

func TestSanitiser(t *testing.T) {
	in := `<p onclick="steal()">Dear Bob <b>results</b></p>
<script>alert(1)</script>
<img src="https://tracker.test/pixel.gif" onerror="alert(2)">
<a href="javascript:alert(3)">click</a>
<a href="https://clinic.test/info">info</a>
<iframe src="https://evil.test/"></iframe>
<div style="background:url(https://tracker.test/bg)">styled</div>
<svg onload="alert(4)"></svg><form action="https://evil.test"><input name="p"></form>`
	out, remote := sanitize(in)
	for _, bad := range []string{"script", "alert", "onclick", "onerror", "onload", "javascript:", "tracker.test", "iframe", "evil.test", "<img", "style=", "<form", "<input", "<svg"} {
		if strings.Contains(out, bad) {
			t.Errorf("sanitised HTML holds %q:\n%s", bad, out)
		}
	}
	for _, good := range []string{"Dear Bob <b>results</b>", `href="https://clinic.test/info"`, `rel="noreferrer noopener"`, "styled"} {
		if !strings.Contains(out, good) {
			t.Errorf("sanitised HTML lost %q:\n%s", good, out)
		}
	}
	if !remote {
		t.Error("remote content not reported")
	}
	if _, remote := sanitize("<p>plain</p>"); remote {
		t.Error("remote content reported for plain HTML")
	}

	// In the page: the note, and the message's HTML in the page inert.
	f := newFixture(t)
	msg := "From: a@org.test\r\nTo: bob@dest.test\r\nSubject: x\r\nContent-Type: text/html\r\n\r\n" + strings.ReplaceAll(in, "\n", "\r\n") + "\r\n"
	page := f.open(f.client(), f.deposit("q1", "bob@dest.test", msg))
	if !strings.Contains(page, "remote content in this message were blocked") || strings.Contains(page, "<script>alert") {
		t.Errorf("message page:\n%s", page)
	}
}
