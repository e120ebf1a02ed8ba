package admin

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"strconv"
	"time"

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/gateway/audit"
	"github.com/sealgate/sealgate/queue"
)

// AuditOps are the audit trail's operations for the CLI: the running
// server's through the admin API, or the trail in a stopped server's
// spool file.
type AuditOps interface {
	AuditVerify() (audit.Report, error)
	AuditSearch(f audit.Filter, limit int) ([]audit.Found, error)
	AuditExport(w io.Writer, from, to time.Time) error
	AuditPublicKey() (ed25519.PublicKey, error)
	// AuditAnchor is this node's place in a fleet's trail.
	AuditAnchor() (audit.Anchor, error)
}

// ErrNoAuditKey: the audit signing key does not exist, so checkpoints
// cannot be verified.
var ErrNoAuditKey = errors.New("no audit signing key")

// AuditOpsFor gives the audit operations beside the spool access q
// (from OpenQueueOps).
func AuditOpsFor(q QueueOps, cfg *config.Config) (AuditOps, error) {
	switch q := q.(type) {
	case *AdminClient:
		return q, nil
	case *queue.Store:
		key, err := readAuditKey(cfg.AuditSigningKeyFile())
		if err != nil {
			return nil, err
		}
		t := audit.New(q, key, nil)
		t.SetCheckpointInterval(cfg.Audit.CheckpointInterval.D())
		return localAudit{t}, nil
	}
	return nil, fmt.Errorf("unexpected spool access %T", q)
}

// readAuditKey reads the signing key without creating it: a verifier
// must not make up the key it checks against.
func readAuditKey(path string) (ed25519.PrivateKey, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w at %s (the server creates it on first start)", ErrNoAuditKey, path)
	}
	return audit.LoadOrCreateKey(path)
}

type localAudit struct{ t *audit.Trail }

func (l localAudit) AuditVerify() (audit.Report, error) { return l.t.Verify() }
func (l localAudit) AuditSearch(f audit.Filter, limit int) ([]audit.Found, error) {
	return l.t.Search(f, limit)
}
func (l localAudit) AuditExport(w io.Writer, from, to time.Time) error {
	return l.t.Export(w, from, to)
}
func (l localAudit) AuditPublicKey() (ed25519.PublicKey, error) { return l.t.PublicKey(), nil }
func (l localAudit) AuditAnchor() (audit.Anchor, error)         { return l.t.Anchor() }

// The client side.

// AuditVerify asks the server to verify its trail.
func (c *AdminClient) AuditVerify() (audit.Report, error) {
	var rep audit.Report
	err := c.do(http.MethodGet, "/api/v1/audit/verify", &rep)
	return rep, err
}

// AuditAnchor asks the server for its place in a fleet's trail.
func (c *AdminClient) AuditAnchor() (audit.Anchor, error) {
	var a audit.Anchor
	err := c.do(http.MethodGet, "/api/v1/audit/anchor", &a)
	return a, err
}

// AuditSearch asks the server for the records that match f.
func (c *AdminClient) AuditSearch(f audit.Filter, limit int) ([]audit.Found, error) {
	var found []audit.Found
	err := c.do(http.MethodGet, "/api/v1/audit?"+filterQuery(f, limit).Encode(), &found)
	return found, err
}

// AuditExport streams the server's export into w.
func (c *AdminClient) AuditExport(w io.Writer, from, to time.Time) error {
	q := filterQuery(audit.Filter{From: from, To: to}, 0)
	req, err := http.NewRequest(http.MethodGet, c.base+"/api/v1/audit/export?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := (&http.Client{Transport: c.http.Transport}).Do(req) // no overall timeout: an export may be long
	if err != nil {
		return fmt.Errorf("admin API at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("admin API at %s: %s", c.base, resp.Status)
	}
	_, err = io.Copy(w, resp.Body)
	return err
}

// AuditPublicKey asks the server for the key its checkpoints verify with.
func (c *AdminClient) AuditPublicKey() (ed25519.PublicKey, error) {
	var res struct {
		PublicKey string `json:"public_key"`
	}
	if err := c.do(http.MethodGet, "/api/v1/audit/key", &res); err != nil {
		return nil, err
	}
	k, err := hex.DecodeString(res.PublicKey)
	if err != nil || len(k) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("admin API at %s: bad audit key", c.base)
	}
	return k, nil
}

func filterQuery(f audit.Filter, limit int) url.Values {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("message_id", f.MessageID)
	set("queue_id", f.QueueID)
	set("sender", f.Sender)
	set("recipient", f.Recipient)
	set("type", f.Type)
	if !f.From.IsZero() {
		q.Set("from", f.From.Format(time.RFC3339Nano))
	}
	if !f.To.IsZero() {
		q.Set("to", f.To.Format(time.RFC3339Nano))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	return q
}

func parseFilter(q url.Values) (audit.Filter, int, error) {
	f := audit.Filter{MessageID: q.Get("message_id"), QueueID: q.Get("queue_id"), Sender: q.Get("sender"),
		Recipient: q.Get("recipient"), Type: q.Get("type")}
	for name, t := range map[string]*time.Time{"from": &f.From, "to": &f.To} {
		if v := q.Get(name); v != "" {
			parsed, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return f, 0, fmt.Errorf("%s: want RFC 3339 time, got %q", name, v)
			}
			*t = parsed
		}
	}
	limit := 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return f, 0, fmt.Errorf("limit: want a number, got %q", v)
		}
		limit = n
	}
	return f, limit, nil
}

// The server side.

func (a *API) auditRoutes(mux *routeMux) {
	if a.audit == nil {
		return
	}
	mux.HandleFunc("GET /api/v1/audit", func(w http.ResponseWriter, r *http.Request) {
		f, _, err := parseFilter(r.URL.Query())
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		found, err := a.audit.Search(f, 0)
		if err != nil {
			a.fail(w, err)
			return
		}
		if found == nil {
			found = []audit.Found{}
		}
		if found, ok := paginate(w, r, found, func(f audit.Found) string { return fmt.Sprintf("%020d", f.Seq) }); ok {
			writeJSON(w, http.StatusOK, found)
		}
	})
	mux.HandleFunc("GET /api/v1/audit/verify", func(w http.ResponseWriter, r *http.Request) {
		rep, err := a.audit.Verify()
		if err != nil {
			a.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, rep)
	})
	mux.HandleFunc("GET /api/v1/audit/export", func(w http.ResponseWriter, r *http.Request) {
		f, _, err := parseFilter(r.URL.Query())
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		if err := a.audit.Export(w, f.From, f.To); err != nil {
			a.logger.Error("audit export", "err", err)
		}
	})
	mux.HandleFunc("GET /api/v1/audit/anchor", func(w http.ResponseWriter, r *http.Request) {
		anchor, err := a.audit.Anchor()
		if err != nil {
			a.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, anchor)
	})
	mux.HandleFunc("GET /api/v1/audit/key", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"public_key": hex.EncodeToString(a.audit.PublicKey())})
	})
}

// audited records an admin action done through the API, with who did it
// (the token's holder, from the client's address). A failure to record
// is logged: the action has happened.
func (a *API) audited(r *http.Request, action, queueID, detail string) {
	if a.audit == nil {
		return
	}
	if err := a.audit.Record(audit.Admin(time.Now(), action, actorOf(r), queueID, detail)); err != nil {
		a.logger.Error("audit record of an admin action", "action", action, "err", err)
	}
}

// actorOf names who made r: its principal and the client's address.
func actorOf(r *http.Request) string {
	p := principalOf(r)
	name := p.Name
	if name == "" {
		name = "admin API"
	}
	if p.Signed {
		name += ", signed request"
	}
	return name + ", from " + r.RemoteAddr
}

// auditCall records one call to the admin listener with its principal,
// method, path and result: every call, reads too — who looked at what
// is part of the story. The one exception is a call its own records
// already tell: an accepted message's "received" entry names the
// principal and the client, in the transaction that spooled it, so a
// second record (and a second commit) per message would say nothing
// more.
func (a *API) auditCall(r *http.Request, status int) {
	if a.audit == nil {
		return
	}
	note := noteOf(r)
	if note.covered {
		return
	}
	detail := r.Method + " " + r.URL.Path
	if r.URL.RawQuery != "" {
		detail += "?" + r.URL.RawQuery
	}
	detail += " → " + strconv.Itoa(status)
	if note.detail != "" {
		detail += " (" + note.detail + ")"
	}
	rec := audit.Admin(time.Now(), "api-call", actorOf(r), note.queueID, detail)
	if err := a.audit.Record(rec); err != nil {
		a.logger.Error("audit record of an API call", "err", err)
	}
}

// callNote is what a handler adds to the audit record of its call.
type callNote struct {
	queueID string // the message the call was about
	detail  string // what the status alone does not say
	// covered: the records the call made already tell it (every message
	// it took has its "received" entry).
	covered bool
}

type callNoteKey struct{}

// noteOf is the note of r's call (one that nothing reads when the call
// is not audited).
func noteOf(r *http.Request) *callNote {
	if n, ok := r.Context().Value(callNoteKey{}).(*callNote); ok {
		return n
	}
	return &callNote{}
}

// withCall is r carrying p and a note for its call's audit record.
func withCall(r *http.Request, p Principal) *http.Request {
	ctx := context.WithValue(r.Context(), principalKey{}, p)
	return r.WithContext(context.WithValue(ctx, callNoteKey{}, &callNote{}))
}

// LocalActor names who acts on a stopped server's spool file: the CLI,
// the user and the host.
func LocalActor() string {
	who := "sealgate CLI on the spool file"
	if u, err := user.Current(); err == nil {
		who += " as " + u.Username
	}
	if h, err := os.Hostname(); err == nil {
		who += " on " + h
	}
	return who
}

// auditedKeys records the key store's changes made on a stopped
// server's spool (the running server's API records its own).
type auditedKeys struct {
	KeyOps
	store *queue.Store
}

func (k auditedKeys) ImportKeys(data []byte) ([]certs.Key, error) {
	keys, err := k.KeyOps.ImportKeys(data)
	for _, key := range keys {
		auditOrSay(k.store, audit.Admin(time.Now(), "key-import", LocalActor(), "", key.Kind+" key "+key.Fingerprint+" for "+key.Address))
	}
	return keys, err
}

func (k auditedKeys) RemoveKey(fingerprint string) (int, error) {
	n, err := k.KeyOps.RemoveKey(fingerprint)
	if err == nil && n > 0 {
		auditOrSay(k.store, audit.Admin(time.Now(), "key-remove", LocalActor(), "", "key "+fingerprint+" removed"))
	}
	return n, err
}

// auditOrSay records an admin action on the spool file, and says so on
// standard error when it cannot (the action stands; the CLI's user must
// know its record is missing).
func auditOrSay(store *queue.Store, rec []byte) {
	if err := store.Audit(rec); err != nil {
		fmt.Fprintf(os.Stderr, "sealgate: the audit record of this action could not be written: %v\n", err)
	}
}
