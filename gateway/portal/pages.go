package portal

import (
	"embed"
	"html/template"
)

// texts are every sentence the portal shows, in one place so that they
// can be translated later.
type texts struct {
	Title, Gone, GoneDetail                                  string
	Intro, SendCode, CodeSent, CodeLabel, CodeHint, Open     string
	SendNew, WrongCode, NoCode, TooMany, Failed              string
	From, To, Cc, Date, Subject, Attachments, RemoteBlocked  string
	Download, Footer, SessionEnded                           string
	ReplyTitle, ReplyLabel, ReplyFiles, ReplySend, ReplySent string
	ReplyTooBig, StaleForm                                   string
	// The sender's pages.
	SenderIntro, SenderTitle, SenderDetail, NotOpened, OpenedAt string
	AccessRevoked, RevokeOne, RevokeAll, RevokeAllHint          string
	RecipientRevoked, RevokedTitle, RevokedDetail               string
}

var english = texts{
	Title:         "Secure message",
	Gone:          "This message is not available",
	GoneDetail:    "The link is not valid, the message has expired, or the sender has withdrawn it. If you expected a message, ask the sender to send it again.",
	Intro:         "You have a secure message. To prove that the mailbox it was sent to is yours, we will email a one-time code to it.",
	SendCode:      "Email me a code",
	CodeSent:      "We have emailed a code to %s. It is valid for 10 minutes.",
	CodeLabel:     "One-time code",
	CodeHint:      "8 digits, from the email we just sent you",
	Open:          "Open the message",
	SendNew:       "Send a new code",
	WrongCode:     "That code is not right. Tries left: %d.",
	NoCode:        "There is no valid code: it expired, was used, or was entered wrongly too often. Request a new one.",
	TooMany:       "Too many requests. Please wait a while and try again.",
	Failed:        "Something went wrong. Please try again.",
	From:          "From",
	To:            "To",
	Cc:            "Cc",
	Date:          "Date",
	Subject:       "Subject",
	Attachments:   "Attachments",
	RemoteBlocked: "Images and other remote content in this message were blocked for your privacy.",
	Download:      "Download",
	Footer:        "This page was sent securely. Close it when you are done.",
	SessionEnded:  "Your session has ended. Request a new code to read the message again.",
	ReplyTitle:    "Reply securely",
	ReplyLabel:    "Your reply",
	ReplyFiles:    "Attach files (optional)",
	ReplySend:     "Send reply",
	ReplySent:     "Your reply was sent securely.",
	ReplyTooBig:   "The reply is too large.",
	StaleForm:     "Forbidden: the form is out of date; go back, reload the page and try again.",

	SenderIntro:      "You sent a secure message. To withdraw it, first prove that the mailbox you sent it from is yours: we will email a one-time code to it.",
	SenderTitle:      "Your secure message",
	SenderDetail:     "Sent %s; readable by its recipients until %s.",
	NotOpened:        "not opened",
	OpenedAt:         "opened %s",
	AccessRevoked:    "access withdrawn",
	RevokeOne:        "Withdraw for this recipient",
	RevokeAll:        "Withdraw the message for everyone",
	RevokeAllHint:    "The message and its attachments are destroyed on the server; every link to it shows “not available”. This cannot be undone.",
	RecipientRevoked: "Access for that recipient was withdrawn.",
	RevokedTitle:     "The message was withdrawn",
	RevokedDetail:    "Its content has been destroyed. Recipients who open their link now see that it is not available.",
}

//go:embed templates/*.html
var templateFS embed.FS

var pages = template.Must(template.New("").ParseFS(templateFS, "templates/*.html"))
