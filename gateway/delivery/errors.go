package delivery

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/emersion/go-smtp"
	"github.com/sealgate/sealgate/internal/dnsres"
)

// Error is a failure of a delivery step that is not an SMTP reply from
// the destination (DNS, connection, TLS), or such a reply turned into
// what the recipient's outcome and the DSN need: the RFC 3463 status,
// whether it is worth retrying, and a message safe to show the sender.
type Error struct {
	Temporary bool
	Code      int    // SMTP reply code when the destination gave one
	Status    string // RFC 3463 enhanced status
	Msg       string // safe to show to the sender
	// NoSession says in a few words why no mail host took a session
	// ("connection refused", "timed out, TLS handshake failed"), "" when
	// the error is not about reaching one.
	NoSession string
}

func (e *Error) Error() string { return e.Msg }

func tempErr(status, format string, args ...any) *Error {
	return &Error{Temporary: true, Status: status, Msg: fmt.Sprintf(format, args...)}
}

func permErr(status, format string, args ...any) *Error {
	return &Error{Status: status, Msg: fmt.Sprintf(format, args...)}
}

// asDeliveryError turns an SMTP reply or a transport error into a delivery
// error: 5xx is permanent, everything else temporary.
func asDeliveryError(err error) *Error {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		status := fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
		if se.EnhancedCode == smtp.NoEnhancedCode || se.EnhancedCode == smtp.EnhancedCodeNotSet {
			status = fmt.Sprintf("%d.0.0", se.Code/100)
		}
		return &Error{Temporary: se.Code/100 != 5, Code: se.Code, Status: status, Msg: replyText(err)}
	}
	var de *Error
	if errors.As(err, &de) {
		return de
	}
	var dnsErr *dnsres.Error
	if errors.As(err, &dnsErr) {
		return &Error{Temporary: dnsErr.Temporary, Status: dnsErr.Status, Msg: dnsErr.Msg}
	}
	return tempErr("4.4.2", "connection failed: %v", err)
}

// replyText is a refusal as the server wrote it, enhanced status code
// included ("550 5.1.1 no such user"), on one line; any other error's
// text.
func replyText(err error) string {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		code := strconv.Itoa(se.Code)
		if ec := se.EnhancedCode; ec != smtp.EnhancedCodeNotSet && ec != smtp.NoEnhancedCode {
			code += fmt.Sprintf(" %d.%d.%d", ec[0], ec[1], ec[2])
		}
		return code + " " + strings.Join(strings.Fields(se.Message), " ")
	}
	return err.Error()
}

func isSMTPReply(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se)
}

// bodyReadError is a failure to read the message being sent (its
// spooled body file missing or damaged), as against the connection
// failing: the recipients wait, and the next attempt says why.
type bodyReadError struct{ err error }

func (e *bodyReadError) Error() string { return e.err.Error() }

// bodyReader marks the errors of reading a body as bodyReadError.
type bodyReader struct{ r io.Reader }

func (b bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		err = &bodyReadError{err}
	}
	return n, err
}

// bodyError turns an error of reading the body into the delivery error
// the recipients are told; other errors (the connection's) pass as
// they are.
func bodyError(err error) error {
	var be *bodyReadError
	if errors.As(err, &be) {
		return tempErr("4.3.0", "the message could not be read from the spool: %v", be.err)
	}
	return err
}
