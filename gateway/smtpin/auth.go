package smtpin

import (
	"errors"
	"net/netip"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/config"
)

// maxAuthFailures is how many failed AUTH attempts a session gets before
// it is closed: enough for a typo, not for guessing.
const maxAuthFailures = 3

// Across connections, a client address (an IPv6 /64) that fails AUTH
// authFailuresPerWindow times within authWindow is refused AUTH until
// the window has passed: closing the connection alone would let a guesser
// reconnect and go on.
const (
	authFailuresPerWindow = 10
	authWindow            = 10 * time.Minute
	maxAuthClients        = 100000 // entries kept; older ones are forgotten first
)

type authLimiter struct {
	mu      sync.Mutex
	clients map[netip.Addr]*authRecord
}

type authRecord struct {
	since    time.Time
	failures int
}

func newAuthLimiter() *authLimiter { return &authLimiter{clients: map[netip.Addr]*authRecord{}} }

// blocked reports whether key may not try AUTH now.
func (l *authLimiter) blocked(key netip.Addr, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.clients[key]
	return r != nil && now.Sub(r.since) < authWindow && r.failures >= authFailuresPerWindow
}

func (l *authLimiter) failed(key netip.Addr, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.clients[key]
	if r == nil || now.Sub(r.since) >= authWindow {
		if len(l.clients) >= maxAuthClients {
			for k, v := range l.clients {
				if now.Sub(v.since) >= authWindow || len(l.clients) >= maxAuthClients {
					delete(l.clients, k)
				}
			}
		}
		r = &authRecord{since: now}
		l.clients[key] = r
	}
	r.failures++
}

// checkCredentials checks a username and password for the SASL servers.
// An unknown user costs what the slowest configured hash costs, so that
// timing does not tell which users exist.
func (c *conn) checkCredentials(username, password string) error {
	srv := c.srv
	key := clientKey(c.clientIP)
	now := srv.opts.Now()
	if srv.authFailures.blocked(key, now) {
		srv.opts.Logger.Warn("authentication refused: too many failures from this address", "client", c.clientIP.String())
		return &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many authentication failures, try again later"}
	}
	ok := false
	found := false
	for _, u := range c.set.cfg.Auth.Users {
		if u.Username == username {
			ok, found = config.CheckPassword(u.PasswordHash, password), true
			break
		}
	}
	if !found {
		config.CheckPassword(c.set.decoyHash(), password)
	}
	if ok {
		c.authUser = username
		srv.opts.Logger.Info("authenticated", "client", c.clientIP.String(), "user", username)
		return nil
	}
	c.authFail++
	srv.authFailures.failed(key, now)
	srv.opts.Logger.Warn("authentication failed", "client", c.clientIP.String(), "user", username, "failures", c.authFail)
	if c.authFail >= maxAuthFailures {
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many authentication failures"}
	}
	return toSMTPError(errAuthFailed, "")
}

// decoyHash is the configured hash that takes longest to check, found
// once per settings by timing each: what an unknown user is checked
// against.
func (s *settings) decoyHash() string {
	s.decoyOnce.Do(func() {
		var slowest time.Duration
		for _, u := range s.cfg.Auth.Users {
			start := time.Now()
			config.CheckPassword(u.PasswordHash, "\x00 not a password \x00")
			if d := time.Since(start); d >= slowest {
				slowest, s.decoy = d, u.PasswordHash
			}
		}
	})
	return s.decoy
}

// loginServer is the server side of the LOGIN mechanism (an obsolete
// but widespread SASL mechanism; Outlook and many devices use it).
type loginServer struct {
	check    func(username, password string) error
	username string
	step     int
}

func (l *loginServer) Next(response []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		l.step = 1
		if len(response) == 0 {
			return []byte("Username:"), false, nil
		}
		fallthrough // initial response carried the username
	case 1:
		l.username = string(response)
		l.step = 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		if err := l.check(l.username, string(response)); err != nil {
			return nil, true, err
		}
		return nil, true, nil
	}
	return nil, true, errors.New("unexpected LOGIN response")
}
