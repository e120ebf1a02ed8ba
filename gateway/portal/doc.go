// Package portal is the recipients' HTTPS portal for escrowed mail
// (net/http and html/template, on a listener of its own).
//
// The path of a recipient: the link of the notice (/m/<token>) offers to
// mail a one-time code to the address the message was for; the code
// (8 digits, 10 minutes, single use, voided after 5 wrong tries; at most
// 5 codes per link and 10 per client address an hour, 30 tries per
// address an hour) opens a session (cookie __Host-sg-session: HttpOnly,
// Secure, SameSite=Strict, bound to that one link, 15 minutes by
// default); the session shows the message — its headers, the text or
// the HTML sanitised with bluemonday (no scripts, event handlers,
// styles, forms, images or frames; links to http, https and mailto only,
// without referrer; a note says when remote content was removed) — its
// attachments as downloads (Content-Disposition: attachment, a sandbox
// CSP), and a reply form whose text and files go to the sender through
// the spool, threaded with In-Reply-To and References.
//
// A sender's link (/s/<token>, from the receipt escrow.sender_receipt
// sends) takes the same code exchange to the message's envelope sender
// and then withdraws the message for every recipient or for one
// (sender.go).
//
// Every response carries a CSP without any script source, HSTS, nosniff,
// frame-ancestors 'none' and Referrer-Policy: no-referrer; every form
// carries a CSRF token (an HMAC of a per-browser cookie and the link)
// and is refused from another origin. An unknown, expired or revoked
// link gets one neutral page, byte for byte the same. No JavaScript is
// needed or served.
//
// A session lives in its cookie, signed with a key derived from the
// escrow key (session.go): it holds across restarts and on every node of
// a fleet, and no node keeps a table of sessions.
//
// What it does not do: trust proxy headers for the client address, or
// fetch anything remote on the recipient's behalf.
package portal
