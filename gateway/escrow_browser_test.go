package gateway_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"github.com/sealgate/sealgate/internal/testutil"
	"github.com/sealgate/sealgate/queue"
)

// chromiumPath finds Debian's chromium (installed by .ci/run). Without
// it the browser test is skipped on a developer's machine and fails in
// CI, where a skip would hide that the portal was never seen by a
// browser.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed; .ci/run installs Debian's chromium package")
	}
	t.Skip("chromium is not installed (apt-get install chromium); skipping the real-browser test")
	return ""
}

// portalCert issues the portal's certificate for 127.0.0.1 from the
// test CA, writes it for portal.tls, and returns the files and the
// base64 SHA-256 of its public key: Chromium trusts exactly that key
// (--ignore-certificate-errors-spki-list) and nothing else it would
// otherwise refuse, so the page is a real HTTPS origin — the __Host-
// cookies need one.
func portalCert(t *testing.T, ca *testutil.CA, dir string) (certFile, keyFile, spki string) {
	t.Helper()
	cert := ca.Issue(t, "127.0.0.1")
	var chain bytes.Buffer
	for _, der := range cert.Certificate {
		pem.Encode(&chain, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "portal.crt"), filepath.Join(dir, "portal.key")
	if err := os.WriteFile(certFile, chain.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	return certFile, keyFile, base64.StdEncoding.EncodeToString(sum[:])
}

// headless starts a headless Chromium that trusts the portal's key and
// returns its tab's context. The browser process ends in t.Cleanup.
func headless(t *testing.T, spki string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Flag("ignore-certificate-errors-spki-list", spki),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(420, 900), // a phone's width: the page must work there
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to sandbox as root
	}
	// The whole browser session is bounded; each step has a shorter
	// bound of its own.
	life, cancelLife := context.WithTimeout(context.Background(), 2*time.Minute)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(life, opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		chromedp.Cancel(ctx) // closes the browser gracefully
		cancel()
		cancelAlloc() // kills the process if it did not leave on its own
		cancelLife()
	})
	// Start the browser now (the first action on ctx owns the browser,
	// so it runs on ctx itself), so that a broken install fails here.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// step runs browser actions with a bound of its own.
func step(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(c, actions...); err != nil {
		c2, cancel2 := context.WithTimeout(ctx, 5*time.Second)
		defer cancel2()
		loc, _ := chromedp.Run(c2, chromedp.Location())
		page, _ := chromedp.Run(c2, chromedp.OuterHTML(chromedp.CSS("html")))
		t.Fatalf("%s: %v; the browser is at %s:\n%s", what, err, loc, page)
		t.Fatalf("%s: %v", what, err)
	}
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	s, err := chromedp.Run(c, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// TestPortalInARealBrowser is the patient's path in headless Chromium:
// the link from the notice a destination received, a code from the
// second mail, the message, the attachment byte for byte, and a reply
// that reaches the sender's organisation. A screenshot of the message
// page is kept in $TEST_ARTIFACTS (else the test's temp dir).
func TestPortalInARealBrowser(t *testing.T) {
	chromiumPath(t)
	dir := t.TempDir()
	ca := testutil.NewCA(t)
	certFile, keyFile, spki := portalCert(t, ca, dir)
	x := newEscrowE2EWith(t, ca, fmt.Sprintf("portal:\n  tls:\n    cert_file: %s\n    key_file: %s\n", certFile, keyFile))
	ctx := headless(t, spki)

	pdf := pdfBytes()
	id := x.send("alice@org.test", []string{"bob@dest.test"}, labMessage(pdf))
	x.waitState(id, "bob@dest.test", queue.StateDelivered)
	link, _ := x.noticeLink(t, "bob@dest.test")

	step(t, ctx, "open the link",
		chromedp.Navigate(link),
		chromedp.WaitVisible(chromedp.CSS(`main form button[type=submit]`)))
	if got := text(t, ctx, "main"); !strings.Contains(got, "Email me a code") || strings.Contains(got, "haemoglobin") {
		t.Fatalf("link page: %q", got)
	}
	step(t, ctx, "request a code",
		chromedp.Click(chromedp.CSS(`main form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.ID("code")))
	if got := text(t, ctx, "p.notice"); !strings.Contains(got, "b…@dest.test") {
		t.Errorf("code page notice: %q", got)
	}

	// The notice was the first mail to bob; the code is the second.
	code := x.codeFor(t, "bob@dest.test", 1)
	if n := len(x.dest.Messages()); n != 2 {
		t.Errorf("%d mails at the destination, want the notice and the code", n)
	}
	step(t, ctx, "type the code",
		chromedp.SendKeys(chromedp.ID("code"), code),
		chromedp.Click(chromedp.CSS(`form[action$="/verify"] button`)),
		chromedp.WaitVisible(chromedp.CSS("article.body")))
	if got := text(t, ctx, "article.body"); !strings.Contains(got, "haemoglobin result is 13.2") {
		t.Fatalf("message text: %q", got)
	}
	if got := text(t, ctx, "h1"); got != "Lab results" {
		t.Errorf("heading %q, want the subject without its tag", got)
	}

	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(90))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	artifacts := os.Getenv("TEST_ARTIFACTS")
	if artifacts == "" {
		artifacts = dir
	}
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	shotFile := filepath.Join(artifacts, "portal-message.jpeg")
	if err := os.WriteFile(shotFile, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the message page: %s", shotFile)

	// The attachment, through the browser's own download.
	downloads := t.TempDir()
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	progress := chromedp.BrowserEvents(dctx, cdpbrowser.DownloadProgress)
	step(t, ctx, "download the attachment",
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			allow := true
			_, err := chromedp.CallBrowser(ctx, cdpbrowser.SetDownloadBehavior, cdpbrowser.SetDownloadBehaviorParams{
				Behavior: cdpbrowser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: downloads, EventsEnabled: &allow})
			return err
		}),
		chromedp.Click(chromedp.CSS(`ul.attachments a`)))
	var file string
	for ev, err := range progress {
		if err != nil {
			t.Fatalf("download: %v", err)
		}
		if ev.State == cdpbrowser.DownloadProgressStateCanceled {
			t.Fatal("the browser cancelled the download")
		}
		if ev.State == cdpbrowser.DownloadProgressStateCompleted {
			file = filepath.Join(downloads, ev.GUID)
			break
		}
	}
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("downloaded file: %v", err)
	}
	if sha256.Sum256(got) != sha256.Sum256(pdf) {
		t.Errorf("the downloaded attachment (%d bytes) differs from the original (%d bytes)", len(got), len(pdf))
	}

	step(t, ctx, "reply",
		chromedp.SendKeys(chromedp.ID("reply"), "Thank you, doctor. See you Tuesday."),
		chromedp.Click(chromedp.CSS(`form[action$="/reply"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`p.notice[role=status]`)))
	if got := text(t, ctx, `p.notice[role=status]`); got != "Your reply was sent securely." {
		t.Errorf("after the reply: %q", got)
	}
	reply := x.org.WaitMessages(t, 1, 20*time.Second)[0]
	if reply.To[0] != "alice@org.test" || !bytes.Contains(reply.Data, []byte("In-Reply-To: <lab-results@org.test>")) {
		t.Errorf("reply at the sender's organisation:\n%s", reply.Data)
	}
	if !strings.Contains(strings.Join(textParts(t, reply.Data), ""), "See you Tuesday") {
		t.Errorf("reply text missing:\n%s", reply.Data)
	}
}
