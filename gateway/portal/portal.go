package portal

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sealgate/sealgate/queue"
)

// Store is what the portal needs of the escrow store; *queue.Escrow
// implements it. Every method that takes a token answers
// queue.ErrEscrowGone alike for an unknown, expired or revoked one.
type Store interface {
	Lookup(token string) (*queue.EscrowEntry, error)
	Content(token string) ([]byte, error)
	IssueCode(token, client string) (code, address string, err error)
	CheckCode(token, code, client string) (left int, err error)
	Record(token, kind, client, detail string) error
}

// Spool takes the mail the portal sends (codes, replies); *queue.Store
// implements it. Wake tells the scheduler it is due.
type Spool interface {
	Enqueue(ctx context.Context, env queue.Envelope, body []byte) (string, error)
}

// Options configure New. Store, Spool, PublicURL and MailFrom are
// required; nil Now and Logger take time.Now and a discarding logger.
type Options struct {
	Store Store
	Spool Spool
	// Senders serves the senders' revocation pages (/s/); nil: none,
	// every /s/ link gets the neutral page.
	Senders   SenderStore
	Wake      func(id string)
	PublicURL string // https://host[:port]: the origin forms must come from
	MailFrom  string // From of code mails and of replies
	Hostname  string // for Message-IDs
	// Organization, LogoURL and AccentColor brand the pages.
	Organization, LogoURL, AccentColor string
	// SessionLifetime bounds a session (15 minutes).
	SessionLifetime time.Duration
	// SessionKey signs the session cookies (32 bytes; every node of a
	// fleet derives the same from the escrow key). Empty: a random key
	// of this process, so a restart ends the sessions.
	SessionKey []byte
	// MaxReplyBytes bounds a reply with its attachments (10 MiB).
	MaxReplyBytes int64
	// ReplyPolicy decides how a reply leaves, as the live policy decides
	// for any message (its chains, and the message as it must be
	// spooled); nil means opportunistic TLS.
	ReplyPolicy func(env queue.Envelope, msg []byte) ([]queue.RcptDecision, []byte)
	Now         func() time.Time
	// OnOpened, when set, hears of each recipient who opens a message
	// with a good code (metrics).
	OnOpened func()
	Logger   *slog.Logger
}

// Portal is the recipients' web portal.
type Portal struct {
	o        Options
	origin   string
	secret   [32]byte // CSRF token key: derived from the session key, so every node of a fleet accepts its forms
	sessions *sessions
	limits   *limiter
	css      []byte
	imgSrc   string
}

// New returns a portal.
func New(o Options) *Portal {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.SessionLifetime <= 0 {
		o.SessionLifetime = 15 * time.Minute
	}
	if o.MaxReplyBytes <= 0 {
		o.MaxReplyBytes = 10 << 20
	}
	if o.AccentColor == "" {
		o.AccentColor = "#1f5fa8"
	}
	p := &Portal{o: o, sessions: newSessions(o.Now, o.SessionKey), limits: newLimiter(o.Now)}
	if u, err := url.Parse(o.PublicURL); err == nil {
		p.origin = u.Scheme + "://" + u.Host
	}
	if len(o.SessionKey) > 0 {
		m := hmac.New(sha256.New, o.SessionKey)
		m.Write([]byte("sealgate portal csrf key v1"))
		copy(p.secret[:], m.Sum(nil))
	} else {
		rand.Read(p.secret[:])
	}
	p.css = []byte(strings.ReplaceAll(stylesheet, "ACCENT", o.AccentColor))
	p.imgSrc = "'self'"
	if u, err := url.Parse(o.LogoURL); err == nil && u.Scheme == "https" && u.Host != "" {
		p.imgSrc += " https://" + u.Host
	}
	return p
}

// Handler serves the portal. Every response carries the security
// headers, whatever the route.
func (p *Portal) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /portal.css", p.serveCSS)
	mux.HandleFunc("GET /m/{token}", p.show)
	mux.HandleFunc("POST /m/{token}/code", p.checked(p.sendCode))
	mux.HandleFunc("POST /m/{token}/verify", p.checked(p.verify))
	mux.HandleFunc("GET /m/{token}/a/{n}", p.download)
	mux.HandleFunc("POST /m/{token}/reply", p.checked(p.reply))
	if p.o.Senders != nil {
		mux.HandleFunc("GET /s/{token}", p.senderShow)
		mux.HandleFunc("POST /s/{token}/code", p.senderChecked(p.senderCode))
		mux.HandleFunc("POST /s/{token}/verify", p.senderChecked(p.senderVerify))
		mux.HandleFunc("POST /s/{token}/revoke", p.senderChecked(p.senderRevoke))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { p.gone(w, r) })
	return p.secure(mux)
}

// secure sets the headers every response carries: no script at all,
// styles and images from here only (and the logo's host), no framing,
// no referrer, no sniffing, HTTPS for a year, nothing cached.
func (p *Portal) secure(next http.Handler) http.Handler {
	csp := "default-src 'none'; style-src 'self'; img-src " + p.imgSrc +
		"; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("Strict-Transport-Security", "max-age=31536000")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

func (p *Portal) serveCSS(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Write(p.css)
}

// page is what every template gets.
type page struct {
	T        texts
	Org      string
	Logo     string
	Token    string
	CSRF     string
	Error    string
	Notice   string
	CodeSent bool
	View     *view
	SafeHTML template.HTML
	// Base is the link's path ("/m/" for a recipient, "/s/" for a
	// sender); Sender pages get the sender's texts.
	Base   string
	Sender bool
	// The sender's page: the message's dates and its recipients.
	Created, Expires string
	Recipients       []senderRecipient
}

func (p *Portal) render(w http.ResponseWriter, status int, name string, pg page) {
	pg.T, pg.Org, pg.Logo = english, p.o.Organization, p.o.LogoURL
	if pg.Base == "" {
		pg.Base = "/m/"
	}
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, pg); err != nil {
		p.o.Logger.Error("portal template", "template", name, "err", err)
		http.Error(w, english.Failed, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// gone is the one page for an unknown, expired or revoked token: the
// same status and bytes for all, so a page tells nothing of a token.
func (p *Portal) gone(w http.ResponseWriter, _ *http.Request) {
	p.render(w, http.StatusNotFound, "gone", page{})
}

// client is the address a request came from (no proxy headers are
// trusted).
func client(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// show is GET /m/{token}: the message for a session of this token,
// else the page that offers a code.
func (p *Portal) show(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	if _, err := p.o.Store.Lookup(token); err != nil {
		p.storeErr(w, r, err)
		return
	}
	if p.sessions.valid(r, token) {
		p.showMessage(w, r, token)
		return
	}
	p.render(w, http.StatusOK, "verify", page{Token: token, CSRF: p.csrf(w, r, token)})
}

// openMessage reads and parses the escrowed message of token; when it
// cannot, it has answered the request and reports false.
func (p *Portal) openMessage(w http.ResponseWriter, r *http.Request, token string) (*view, bool) {
	raw, err := p.o.Store.Content(token)
	if err != nil {
		p.storeErr(w, r, err)
		return nil, false
	}
	v, err := readMessage(raw)
	if err != nil {
		p.o.Logger.Error("escrowed message unreadable", "err", err)
		http.Error(w, english.Failed, http.StatusInternalServerError)
		return nil, false
	}
	return v, true
}

func (p *Portal) showMessage(w http.ResponseWriter, r *http.Request, token string) {
	if v, ok := p.openMessage(w, r, token); ok {
		p.renderMessage(w, r, token, v, "", "")
	}
}

// renderMessage shows an opened message with a notice or an error above it.
func (p *Portal) renderMessage(w http.ResponseWriter, r *http.Request, token string, v *view, notice, errText string) {
	p.render(w, http.StatusOK, "message", page{Token: token, CSRF: p.csrf(w, r, token), View: v,
		SafeHTML: template.HTML(v.HTML), Notice: notice, Error: errText}) // sanitised by readMessage
}

// storeErr answers a store error: the neutral page for a token that is
// gone, a plain failure otherwise (logged, never shown).
func (p *Portal) storeErr(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, queue.ErrEscrowGone) {
		p.gone(w, r)
		return
	}
	p.o.Logger.Error("escrow store", "err", err)
	http.Error(w, english.Failed, http.StatusInternalServerError)
}

// sendCode is POST /m/{token}/code: a new one-time code, mailed to the
// recipient through the queue.
func (p *Portal) sendCode(w http.ResponseWriter, r *http.Request, token string) {
	pg := page{Token: token, CSRF: p.csrf(w, r, token)}
	p.issueCode(w, r, pg, func() (string, string, error) { return p.o.Store.IssueCode(token, client(r)) })
}

// issueCode runs one code request for pg's page: the per-address limit,
// issue (which applies the per-link limit and says where the code goes),
// the code mail through the queue, and the page saying where it went.
func (p *Portal) issueCode(w http.ResponseWriter, r *http.Request, pg page, issue func() (code, addr string, err error)) {
	if !p.limits.allow("code "+client(r), 10, time.Hour) {
		pg.Error = english.TooMany
		p.render(w, http.StatusTooManyRequests, "verify", pg)
		return
	}
	code, addr, err := issue()
	switch {
	case errors.Is(err, queue.ErrEscrowRateLimited):
		pg.Error, pg.CodeSent = english.TooMany, true
		p.render(w, http.StatusTooManyRequests, "verify", pg)
		return
	case err != nil:
		p.storeErr(w, r, err)
		return
	}
	if err := p.mailCode(r.Context(), addr, code); err != nil {
		p.o.Logger.Error("cannot queue the code mail", "err", err)
		http.Error(w, english.Failed, http.StatusInternalServerError)
		return
	}
	pg.CodeSent = true
	pg.Notice = fmt.Sprintf(english.CodeSent, maskAddress(addr))
	p.render(w, http.StatusOK, "verify", pg)
}

// maskAddress shows enough of an address to recognise it.
func maskAddress(a string) string {
	local, domain, ok := strings.Cut(a, "@")
	if !ok || len(local) == 0 {
		return a
	}
	return local[:1] + "…@" + domain
}

// verify is POST /m/{token}/verify: the code, then a session.
func (p *Portal) verify(w http.ResponseWriter, r *http.Request, token string) {
	pg := page{Token: token, CSRF: p.csrf(w, r, token), CodeSent: true}
	p.checkCode(w, r, pg, token, "/m/"+token, func(code string) (int, error) {
		left, err := p.o.Store.CheckCode(token, code, client(r))
		if err == nil && p.o.OnOpened != nil {
			p.o.OnOpened()
		}
		return left, err
	})
}

// checkCode is the one code-check path for recipients and senders: rate
// limit by client, check the typed code, then start a session under
// sessionKey and go to next.
func (p *Portal) checkCode(w http.ResponseWriter, r *http.Request, pg page, sessionKey, next string, check func(code string) (left int, err error)) {
	if !p.limits.allow("try "+client(r), 30, time.Hour) {
		pg.Error = english.TooMany
		p.render(w, http.StatusTooManyRequests, "verify", pg)
		return
	}
	left, err := check(strings.ReplaceAll(r.PostFormValue("code"), " ", ""))
	switch {
	case errors.Is(err, queue.ErrEscrowCodeWrong):
		pg.Error = fmt.Sprintf(english.WrongCode, left)
		p.render(w, http.StatusUnauthorized, "verify", pg)
		return
	case errors.Is(err, queue.ErrEscrowCodeVoid):
		pg.Error, pg.CodeSent = english.NoCode, false
		p.render(w, http.StatusUnauthorized, "verify", pg)
		return
	case err != nil:
		p.storeErr(w, r, err)
		return
	}
	p.sessions.start(w, sessionKey, p.o.SessionLifetime)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// download is GET /m/{token}/a/{n}: one attachment, as a download.
func (p *Portal) download(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	if _, err := p.o.Store.Lookup(token); err != nil {
		p.storeErr(w, r, err)
		return
	}
	if !p.sessions.valid(r, token) {
		http.Redirect(w, r, "/m/"+token, http.StatusSeeOther)
		return
	}
	v, ok := p.openMessage(w, r, token)
	if !ok {
		return
	}
	n, err := strconv.Atoi(r.PathValue("n"))
	if err != nil || n < 0 || n >= len(v.Attachments) {
		p.gone(w, r)
		return
	}
	a := v.Attachments[n]
	if err := p.o.Store.Record(token, queue.EscrowDownloaded, client(r), a.Name); err != nil {
		p.storeErr(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.ContentType)
	h.Set("Content-Disposition", mimeDisposition(a.Name))
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox; frame-ancestors 'none'")
	h.Set("Content-Length", strconv.Itoa(len(a.data)))
	w.Write(a.data)
}

// checked wraps a form handler: the token must be live, and the form
// must carry this browser's CSRF token for this link and come from the
// portal's own origin.
func (p *Portal) checked(fn func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token := r.PathValue("token")
		r.Body = http.MaxBytesReader(w, r.Body, p.o.MaxReplyBytes+1<<20)
		if _, err := p.o.Store.Lookup(token); err != nil {
			p.storeErr(w, r, err)
			return
		}
		if !p.csrfOK(r, token) {
			http.Error(w, english.StaleForm, http.StatusForbidden)
			return
		}
		fn(w, r, token)
	}
}

// csrfCookie holds a random value per browser; a form's token is an
// HMAC of it and the link, so a token from another site or another
// link does not pass.
const csrfCookie = "__Host-sg-csrf"

func (p *Portal) csrf(w http.ResponseWriter, r *http.Request, token string) string {
	c, err := r.Cookie(csrfCookie)
	val := ""
	if err == nil && len(c.Value) == 43 {
		val = c.Value
	} else {
		var b [32]byte
		rand.Read(b[:])
		val = base64.RawURLEncoding.EncodeToString(b[:])
		http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: val, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	}
	return p.csrfToken(val, token)
}

func (p *Portal) csrfToken(cookie, token string) string {
	mac := hmac.New(sha256.New, p.secret[:])
	mac.Write([]byte(cookie + "\x00" + token))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func (p *Portal) csrfOK(r *http.Request, token string) bool {
	site := r.Header.Get("Sec-Fetch-Site")
	if site != "" && site != "same-origin" {
		return false
	}
	// Under our Referrer-Policy: no-referrer a browser's form POST says
	// "Origin: null" (Fetch, "serializing a request origin"), even from
	// our own page. An opaque origin elsewhere says so too; Fetch
	// Metadata, above, tells them apart where the browser sends it, and
	// the HMAC token and the SameSite=Strict cookie below everywhere.
	if o := r.Header.Get("Origin"); o != "" && o != p.origin && o != "null" {
		return false
	}
	c, err := r.Cookie(csrfCookie)
	if err != nil {
		return false
	}
	var got string
	if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
		if err := r.ParseMultipartForm(1 << 20); err != nil {
			return false
		}
		got = r.FormValue("csrf")
	} else {
		got = r.PostFormValue("csrf")
	}
	return hmac.Equal([]byte(got), []byte(p.csrfToken(c.Value, token)))
}
