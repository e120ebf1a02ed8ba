package smtpin

import (
	"errors"
	"fmt"

	"github.com/emersion/go-smtp"
)

// replyError is an error with the SMTP reply it must produce: the code,
// the enhanced status (RFC 3463), a message that is safe to send to the
// client, and the cause for our own logs.
type replyError struct {
	Code     int
	Enhanced smtp.EnhancedCode
	Public   string
	Cause    error
}

func (e *replyError) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%d %d.%d.%d %s: %v", e.Code, e.Enhanced[0], e.Enhanced[1], e.Enhanced[2], e.Public, e.Cause)
	}
	return fmt.Sprintf("%d %d.%d.%d %s", e.Code, e.Enhanced[0], e.Enhanced[1], e.Enhanced[2], e.Public)
}

func (e *replyError) Unwrap() error { return e.Cause }

// Temporary reports a 4xx reply.
func (e *replyError) Temporary() bool { return e.Code/100 == 4 }

// Replies the inbound session gives; tests match them with errors.Is.
var (
	errRelayDenied = &replyError{Code: 550, Enhanced: smtp.EnhancedCode{5, 7, 1},
		Public: "Relaying denied: authenticate or send from a trusted network"}
	errMustStartTLS = &replyError{Code: 530, Enhanced: smtp.EnhancedCode{5, 7, 0},
		Public: "Must issue a STARTTLS command first"}
	errBareLineEnding = &replyError{Code: 554, Enhanced: smtp.EnhancedCode{5, 6, 11},
		Public: "Message contains a bare CR or LF; line endings must be CRLF (SMTP smuggling defence)"}
	errTooManyHops = &replyError{Code: 554, Enhanced: smtp.EnhancedCode{5, 4, 6},
		Public: "Too many hops (Received headers): mail loop?"}
	errNoDomain = &replyError{Code: 501, Enhanced: smtp.EnhancedCode{5, 1, 3},
		Public: "Recipient address must have a domain"}
	errNeedSMTPUTF8 = &replyError{Code: 553, Enhanced: smtp.EnhancedCode{5, 6, 7},
		Public: "Non-ASCII address requires SMTPUTF8"}
	errAuthFailed = &replyError{Code: 535, Enhanced: smtp.EnhancedCode{5, 7, 8},
		Public: "Authentication credentials invalid"}
	errRequireTLSPlaintext = &replyError{Code: 530, Enhanced: smtp.EnhancedCode{5, 7, 10},
		Public: "REQUIRETLS needs a session protected by STARTTLS"}
	errShuttingDown = &replyError{Code: 421, Enhanced: smtp.EnhancedCode{4, 3, 2},
		Public: "Service shutting down, try again later"}
)

// toSMTPError is the one place an error becomes an SMTP reply. Known
// replies pass through; go-smtp's own replies pass through; anything else
// becomes a generic temporary failure naming the queue ID, so that no
// internal detail (a path, a key, a stack of causes) reaches the client.
func toSMTPError(err error, queueID string) *smtp.SMTPError {
	if err == nil {
		return nil
	}
	var re *replyError
	if errors.As(err, &re) {
		return &smtp.SMTPError{Code: re.Code, EnhancedCode: re.Enhanced, Message: re.Public}
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se
	}
	msg := "Internal error, try again later"
	if queueID != "" {
		msg += " (" + queueID + ")"
	}
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: msg}
}
