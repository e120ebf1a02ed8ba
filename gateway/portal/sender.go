package portal

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/sealgate/sealgate/queue"
)

// The sender's pages (/s/<token>, the link of the receipt the sender
// got when the notices went out): the same code exchange as a
// recipient's, to the message's envelope sender, then a page that
// lists the recipients and revokes the message for all or one. Their
// sessions and CSRF tokens are bound to "s:"+token, so a recipient's
// session never opens a sender's page nor the reverse.

// SenderStore is what the sender's pages need of the escrow store;
// *queue.Escrow implements it. Every method answers queue.ErrEscrowGone
// alike for an unknown, expired or revoked sender token.
type SenderStore interface {
	SenderLookup(token string) (*queue.EscrowSenderView, error)
	IssueSenderCode(token, client string) (code, address string, err error)
	CheckSenderCode(token, code, client string) (left int, err error)
	RevokeBySender(token, rcptID, client string) error
}

// senderRecipient is one row of the sender's page.
type senderRecipient struct {
	ID, Address, State string
	Revoked            bool
}

func senderKey(token string) string { return "s:" + token }

// senderShow is GET /s/{token}.
func (p *Portal) senderShow(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	v, err := p.o.Senders.SenderLookup(token)
	if err != nil {
		p.storeErr(w, r, err)
		return
	}
	if p.sessions.valid(r, senderKey(token)) {
		p.senderPage(w, r, token, v, "", "")
		return
	}
	p.render(w, http.StatusOK, "verify", page{Base: "/s/", Sender: true, Token: token, CSRF: p.csrf(w, r, senderKey(token))})
}

func (p *Portal) senderPage(w http.ResponseWriter, r *http.Request, token string, v *queue.EscrowSenderView, notice, errText string) {
	var rows []senderRecipient
	for _, rc := range v.Recipients {
		row := senderRecipient{ID: rc.ID, Address: rc.Address, State: english.NotOpened}
		switch {
		case rc.Revoked():
			row.State, row.Revoked = english.AccessRevoked, true
		case !rc.Opened.IsZero():
			row.State = fmt.Sprintf(english.OpenedAt, rc.Opened.UTC().Format("2 Jan 2006 15:04 MST"))
		}
		rows = append(rows, row)
	}
	p.render(w, http.StatusOK, "sender", page{Base: "/s/", Sender: true, Token: token, CSRF: p.csrf(w, r, senderKey(token)),
		Notice: notice, Error: errText, Recipients: rows,
		Created: v.Message.Created.UTC().Format("2 Jan 2006 15:04 MST"), Expires: v.Message.Expires.UTC().Format("2 Jan 2006")})
}

// senderCode is POST /s/{token}/code: a code to the envelope sender.
func (p *Portal) senderCode(w http.ResponseWriter, r *http.Request, token string) {
	pg := page{Base: "/s/", Sender: true, Token: token, CSRF: p.csrf(w, r, senderKey(token))}
	p.issueCode(w, r, pg, func() (string, string, error) { return p.o.Senders.IssueSenderCode(token, client(r)) })
}

// senderVerify is POST /s/{token}/verify: the code, then a session.
func (p *Portal) senderVerify(w http.ResponseWriter, r *http.Request, token string) {
	pg := page{Base: "/s/", Sender: true, Token: token, CSRF: p.csrf(w, r, senderKey(token)), CodeSent: true}
	p.checkCode(w, r, pg, senderKey(token), "/s/"+token, func(code string) (int, error) {
		return p.o.Senders.CheckSenderCode(token, code, client(r))
	})
}

// senderRevoke is POST /s/{token}/revoke: recipient "" (the button for
// everyone) revokes the message, an access record ID that recipient.
func (p *Portal) senderRevoke(w http.ResponseWriter, r *http.Request, token string) {
	if !p.sessions.valid(r, senderKey(token)) {
		http.Redirect(w, r, "/s/"+token, http.StatusSeeOther)
		return
	}
	rcpt := r.PostFormValue("recipient")
	err := p.o.Senders.RevokeBySender(token, rcpt, client(r))
	switch {
	case errors.Is(err, queue.ErrEscrowNotRecipient):
		http.Error(w, english.Failed, http.StatusBadRequest)
		return
	case err != nil:
		p.storeErr(w, r, err)
		return
	}
	if rcpt == "" {
		p.o.Logger.Info("escrowed message revoked by its sender", "client", client(r))
		p.render(w, http.StatusOK, "revoked", page{})
		return
	}
	v, err := p.o.Senders.SenderLookup(token)
	if err != nil {
		p.storeErr(w, r, err)
		return
	}
	p.senderPage(w, r, token, v, english.RecipientRevoked, "")
}

// senderChecked is checked for the sender's forms.
func (p *Portal) senderChecked(fn func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token := r.PathValue("token")
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		if _, err := p.o.Senders.SenderLookup(token); err != nil {
			p.storeErr(w, r, err)
			return
		}
		if !p.csrfOK(r, senderKey(token)) {
			http.Error(w, english.StaleForm, http.StatusForbidden)
			return
		}
		fn(w, r, token)
	}
}
