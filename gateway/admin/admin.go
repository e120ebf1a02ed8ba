package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/sealgate/sealgate/gateway/audit"
	"github.com/sealgate/sealgate/policy"
	"github.com/sealgate/sealgate/queue"
)

// QueueOps are the queue operations an admin can run. *queue.Store
// implements them directly (the server is stopped and the CLI opens the
// data dir itself); AdminClient implements them over the admin HTTP API
// of a running server. Every method that names an ID returns an error
// matching queue.ErrNotFound when there is no such message.
type QueueOps interface {
	List() ([]queue.Message, error)
	// ListPage is one page of List: at most limit messages after the
	// ID after, and the ID to ask for next ("" at the end).
	ListPage(after string, limit int) ([]queue.Message, string, error)
	Get(id string) (*queue.Message, error)
	// Resolve turns a unique ID prefix into the message's ID
	// (queue.ErrAmbiguous when several match).
	Resolve(prefix string) (string, error)
	Retry(id string) error
	RetryAll() (int, error)
	Delete(id string) error
	Hold(id string) error
	Release(id string) error
	// Domains and ResetDomain are the TLS history of destinations.
	Domains() ([]queue.DomainInfo, error)
	ResetDomain(domain string) error
	// Quarantined lists the messages whose records could not be read;
	// RestoreQuarantined puts them back (all when ids is empty), trying
	// oldKeys as well as the spool key, and says per message what it did.
	Quarantined() ([]queue.QuarantinedMessage, error)
	RestoreQuarantined(ids []string, oldKeys ...[]byte) ([]queue.RestoreResult, error)
}

// Store is what the admin API needs: the queue operations and the
// spool's counters. queue.Store implements it.
type Store interface {
	QueueOps
	// RetryAllIDs is RetryAll, returning the messages it made due.
	RetryAllIDs() ([]string, error)
	Stats() (queue.Stats, error)
	Counts() (queue.Counts, error)
}

// API serves health checks and the queue API on the admin listener,
// which must be loopback (config validation enforces it). Every route but
// /healthz and /readyz needs the bearer token, the listener's own Host
// and, to change anything, a JSON content type (auth.go).
//
//	GET  /healthz                       200 while the process runs
//	GET  /readyz                        200 when serving (with cheap spool counts and, in a fleet, the shared store's state), 503 while starting or draining
//	GET  /api/v1/stats                  messages and recipients by state (reads every record)
//	GET  /api/v1/queue?after=&limit=    one page of the list (JSON array, no bodies; Next-After header)
//	POST /api/v1/queue/retry            retry every pending message now
//	GET  /api/v1/queue/{id}             one message: envelope, recipients, history
//	DELETE /api/v1/queue/{id}           remove it
//	POST /api/v1/queue/{id}/{action}    retry | hold | release
//	POST /api/v1/queue/{id}/reapply     decide it again under the live policy (requeue.go)
//	POST /api/v1/queue/reapply          the same for every unfinished message
//	POST /api/v1/queue/{id}/bounce      end its pending recipients as bounced, DSN to the sender
//	GET  /api/v1/queue/quarantine       quarantined messages (IDs, sizes, reasons)
//	POST /api/v1/queue/quarantine/restore  {"ids": [...], "old_keys": [base64…]}: put them back
//	POST /api/v1/policy/reload          re-read the config file's policy rules
//	GET  /api/v1/domains                TLS history of destination domains
//	POST /api/v1/domains/{domain}/reset forget a domain's TLS history
//	GET  /api/v1/keys                   the key store (keys.go)
//	POST /api/v1/keys                   import a key file {"data": base64}
//	GET  /api/v1/keys/{address}         the keys of one address
//	DELETE /api/v1/keys/{fingerprint}   remove a key
//	GET  /api/v1/escrow[?queue_id=ID]   escrowed messages (escrowapi.go)
//	GET  /api/v1/escrow/{id}            one, with its access log
//	POST /api/v1/escrow/{id}/revoke     end access {"recipient": ADDR} or {}
//	GET  /api/v1/audit?message_id=&queue_id=&sender=&recipient=&from=&to=&type=&limit=  audit records (audit.go)
//	GET  /api/v1/audit/verify           walk the chain and the checkpoints
//	GET  /api/v1/audit/export?from=&to= JSON lines with hashes and checkpoints
//	GET  /api/v1/audit/key              the checkpoints' public key
//	GET  /api/v1/audit/anchor           this node's place in a fleet's trail (what it shipped and signed)
//	GET  /metrics                       Prometheus metrics (gateway/metrics)
//	GET  /api/v1/apikeys                API keys (apikeys.go); POST creates {"name","scope","domains","rate_per_minute","max_message_bytes"}
//	POST /api/v1/apikeys/{id}/revoke    end a key
//	POST /api/v1/messages               the send API (messages.go); :batch for up to 500
//	GET  /api/v1/messages/{id}          per-recipient status
//	POST /oauth/token                   OAuth 2.0 tokens: client_credentials, password (oauth.go)
//	POST /oauth/revoke                  end a token early (RFC 7009)
type API struct {
	reloadPolicy func() error
	store        Store
	keys         KeyOps
	escrow       EscrowOps // nil: escrow is off
	requeue      RequeueOps
	audit        *audit.Trail // nil: no audit routes
	metrics      http.Handler // nil: no /metrics
	apiKeys      APIKeyStore  // nil: the admin token only
	failures     failureLimiter
	submit       Submitter // nil: no send API
	sendLimits   SendLimits
	sendRate     rateLimiter
	rates        RateStore // a fleet's (SyncRates); nil on a single node
	node         string
	// ratesPublished are the keys this node last published a count for
	// (only SyncRates' caller, one goroutine, touches it).
	ratesPublished map[string]bool
	hostname       string
	routes         []string // the patterns Handler registered (openapi_test.go)
	tokens         tokens
	sharedStore    func() string
	nonces         nonces
	signedReads    chan struct{} // bounds the bodies read to check a signature
	users          Users         // the password grant's users; nil: no password grant
	engine         func() *policy.Engine
	checkDomain    DomainChecker
	wake           func(id string)
	ready          func() bool
	logger         *slog.Logger
	token          string
	hosts          []string
}

// Options are what the admin API serves from.
type Options struct {
	Store Store
	// Keys is the key store; nil leaves the /api/v1/keys routes out.
	Keys KeyOps
	// Escrow is the escrow store; nil when this node does not provide
	// escrow (the escrow routes then answer 409).
	Escrow EscrowStore
	// Metrics serves /metrics (Prometheus), behind the token like the
	// API; nil leaves it out.
	Metrics http.Handler
	// APIKeys keeps the REST API's keys (apikeys.go); nil accepts the
	// admin token only.
	APIKeys APIKeyStore
	// Submit is the send API's intake (messages.go); nil leaves it out.
	Submit     Submitter
	SendLimits SendLimits
	// Hostname names the Message-IDs the send API makes.
	Hostname string
	// Users are the gateway's users, for the OAuth password grant;
	// TokenLifetime is how long its tokens live (0: 15 minutes).
	Users         Users
	TokenLifetime time.Duration
	// Tokens, when set, keeps the OAuth tokens where every node of a
	// fleet finds them (nil: this node's memory); Nonces the nonces of
	// signed requests.
	Tokens TokenStore
	Nonces NonceStore
	// Rates, when set, is where the fleet's nodes share their counts of
	// each key's messages per minute (SyncRates); Node names this node
	// there.
	Rates RateStore
	Node  string
	// Engine is the live policy, for GET /api/v1/policy/explain;
	// CheckDomain probes a domain (checks.go). nil leaves them out.
	Engine      func() *policy.Engine
	CheckDomain DomainChecker
	// Audit is the audit trail: its routes, and the record of every
	// admin action done through the API.
	Audit *audit.Trail
	// Requeue decides queued mail again and bounces it (a Requeuer on the
	// live policy); nil leaves those routes answering 409.
	Requeue RequeueOps
	// Wake tells the scheduler that a message is due now (retry, release).
	Wake func(id string)
	// SharedStore, on a fleet's node, says whether the shared store
	// answers ("up", "down"), for /readyz; nil on a single node.
	SharedStore func() string
	// Ready reports whether the node accepts mail (/readyz).
	Ready func() bool
	// ReloadPolicy re-reads the config file and swaps in its rules.
	ReloadPolicy func() error
	Logger       *slog.Logger
	// Token is the bearer token every /api/ and /debug/ request must
	// carry (LoadOrCreateToken); "" refuses them all.
	Token string
	// Hosts are the Host header values accepted (AllowedHosts of the
	// listener's address).
	Hosts []string
}

// New returns the admin API; Handler serves it.
func New(o Options) *API {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	a := &API{sharedStore: o.SharedStore, reloadPolicy: o.ReloadPolicy, store: o.Store, keys: o.Keys, wake: o.Wake, ready: o.Ready, logger: o.Logger,
		token: o.Token, hosts: o.Hosts, requeue: o.Requeue, audit: o.Audit, metrics: o.Metrics, apiKeys: o.APIKeys,
		submit: o.Submit, sendLimits: o.SendLimits, hostname: o.Hostname, users: o.Users,
		engine: o.Engine, checkDomain: o.CheckDomain, tokens: tokens{lifetime: o.TokenLifetime, shared: o.Tokens, logger: o.Logger}, nonces: nonces{shared: o.Nonces, logger: o.Logger}, signedReads: make(chan struct{}, 4),
		rates: o.Rates, node: o.Node}
	if o.Escrow != nil {
		a.escrow = EscrowOf(o.Escrow)
	}
	return a
}

// Handler serves the API; withPprof adds /debug/pprof/.
func (a *API) Handler(withPprof bool) http.Handler {
	mux := &routeMux{ServeMux: http.NewServeMux()}
	defer func() { a.routes = mux.patterns }()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", a.readyz)
	mux.HandleFunc("GET /api/v1/stats", a.stats)
	mux.HandleFunc("GET /api/v1/queue", a.list)
	mux.HandleFunc("POST /api/v1/queue/retry", a.retryAll)
	mux.HandleFunc("GET /api/v1/queue/{id}", a.show)
	mux.HandleFunc("DELETE /api/v1/queue/{id}", a.delete)
	mux.HandleFunc("POST /api/v1/queue/{id}/{action}", a.action)
	a.requeueRoutes(mux)
	a.auditRoutes(mux)
	a.apiKeyRoutes(mux)
	a.messageRoutes(mux)
	a.openAPIRoute(mux)
	a.checkRoutes(mux)
	mux.HandleFunc("POST /oauth/token", a.oauthToken)
	mux.HandleFunc("POST /oauth/revoke", a.oauthRevoke)
	if a.metrics != nil {
		mux.Handle("GET /metrics", a.metrics)
	}
	mux.HandleFunc("GET /api/v1/queue/quarantine", a.quarantined)
	mux.HandleFunc("POST /api/v1/queue/quarantine/restore", a.restoreQuarantined)
	mux.HandleFunc("GET /api/v1/domains", a.domains)
	mux.HandleFunc("POST /api/v1/policy/reload", a.policyReload)
	mux.HandleFunc("POST /api/v1/domains/{domain}/reset", a.resetDomain)
	if a.keys != nil {
		mux.HandleFunc("GET /api/v1/keys", a.listKeys)
		mux.HandleFunc("POST /api/v1/keys", a.importKeys)
		mux.HandleFunc("GET /api/v1/keys/{address}", a.showKeys)
		mux.HandleFunc("DELETE /api/v1/keys/{fingerprint}", a.removeKey)
	}
	mux.HandleFunc("GET /api/v1/escrow", a.listEscrow)
	mux.HandleFunc("GET /api/v1/escrow/{id}", a.showEscrow)
	mux.HandleFunc("POST /api/v1/escrow/{id}/revoke", a.revokeEscrow)
	if withPprof {
		mux.internal = true // not part of the API's description
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	// Anything else gets the API's error shape, not the mux's text.
	mux.ServeMux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		apiError(w, http.StatusNotFound, "no such route: "+r.Method+" "+r.URL.Path)
	})
	return a.guard(mux)
}

func (a *API) readyz(w http.ResponseWriter, r *http.Request) {
	if !a.ready() {
		http.Error(w, "not ready\n", http.StatusServiceUnavailable)
		return
	}
	// Counts, not Stats: a probe must stay cheap however large the spool.
	c, err := a.store.Counts()
	if err != nil {
		a.logger.Error("readyz: spool counts", "err", err)
		http.Error(w, "spool unavailable\n", http.StatusServiceUnavailable)
		return
	}
	out := map[string]any{"status": "ready", "spool": c}
	if a.sharedStore != nil {
		// Reported, not failed on: the node still takes mail into its
		// own spool while the shared store is away.
		out["shared_store"] = a.sharedStore()
	}
	writeJSON(w, http.StatusOK, out)
}

// stats counts every message and recipient by state (it reads every
// record: for admins, not for probes).
func (a *API) stats(w http.ResponseWriter, r *http.Request) {
	st, err := a.store.Stats()
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// list serves one page of the queue: ?after=ID&limit=N (default and
// maximum 1000). The ID to ask for next is in the Next-After header.
func (a *API) list(w http.ResponseWriter, r *http.Request) {
	limit := maxPage
	if l := r.URL.Query().Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n <= 0 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "limit must be a positive number"})
			return
		}
		limit = min(n, maxPage)
	}
	keep, err := StateFilter(r.URL.Query().Get("state"))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	msgs, next, err := a.filteredPage(r.URL.Query().Get("after"), limit, keep)
	if err != nil {
		a.fail(w, err)
		return
	}
	if msgs == nil {
		msgs = []queue.Message{}
	}
	w.Header().Set("Next-After", next)
	writeJSON(w, http.StatusOK, msgs)
}

// maxScanPages bounds the records one filtered page reads: a filter that
// matches little answers with what it found and where to go on.
const maxScanPages = 50

// filteredPage is up to limit messages after after that keep accepts
// (nil: all), and the ID to ask for next ("" at the end).
func (a *API) filteredPage(after string, limit int, keep func(queue.Message) bool) ([]queue.Message, string, error) {
	if keep == nil {
		return a.store.ListPage(after, limit)
	}
	var out []queue.Message
	for range maxScanPages {
		page, next, err := a.store.ListPage(after, maxPage)
		if err != nil {
			return nil, "", err
		}
		for i, m := range page {
			if !keep(m) {
				continue
			}
			out = append(out, m)
			if len(out) == limit {
				if i == len(page)-1 && next == "" {
					return out, "", nil
				}
				return out, m.ID, nil
			}
		}
		if next == "" {
			return out, "", nil
		}
		after = next
	}
	return out, after, nil
}

// maxPage bounds one page of the queue list.
const maxPage = 1000

// id is the message the route names: its {id}, which may be a unique
// prefix of the ID.
func (a *API) id(w http.ResponseWriter, r *http.Request) (string, bool) {
	id, err := a.store.Resolve(r.PathValue("id"))
	if err != nil {
		a.fail(w, err)
		return "", false
	}
	return id, true
}

func (a *API) show(w http.ResponseWriter, r *http.Request) {
	id, ok := a.id(w, r)
	if !ok {
		return
	}
	m, err := a.store.Get(id)
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

func (a *API) delete(w http.ResponseWriter, r *http.Request) {
	id, ok := a.id(w, r)
	if !ok {
		return
	}
	if err := a.store.Delete(id); err != nil {
		a.fail(w, err)
		return
	}
	a.logger.Info("message deleted by admin", "queue_id", id)
	a.audited(r, "delete", id, "message deleted without delivery")
	writeJSON(w, http.StatusOK, map[string]string{"deleted": id})
}

func (a *API) retryAll(w http.ResponseWriter, r *http.Request) {
	ids, err := a.store.RetryAllIDs()
	for _, id := range ids {
		a.wake(id)
	}
	n := len(ids)
	if err != nil {
		a.fail(w, err)
		return
	}
	a.logger.Info("retry of all messages requested by admin", "messages", n)
	a.audited(r, "retry-all", "", fmt.Sprintf("%d messages made due", n))
	writeJSON(w, http.StatusOK, map[string]int{"retried": n})
}

func (a *API) action(w http.ResponseWriter, r *http.Request) {
	id, ok := a.id(w, r)
	if !ok {
		return
	}
	var err error
	switch action := r.PathValue("action"); action {
	case "retry":
		err = a.store.Retry(id)
	case "hold":
		err = a.store.Hold(id)
	case "release":
		err = a.store.Release(id)
	default:
		apiError(w, http.StatusNotFound, "unknown action "+action+" (retry, hold, release, reapply, bounce)")
		return
	}
	if err != nil {
		a.fail(w, err)
		return
	}
	if r.PathValue("action") != "hold" {
		a.wake(id)
	}
	a.logger.Info("queue action by admin", "queue_id", id, "action", r.PathValue("action"))
	a.audited(r, r.PathValue("action"), id, "")
	writeJSON(w, http.StatusOK, map[string]string{r.PathValue("action"): id})
}

func (a *API) policyReload(w http.ResponseWriter, r *http.Request) {
	if err := a.reloadPolicy(); err != nil {
		// The admin listener is loopback-only: the config errors (file,
		// line, key) are what the admin needs to see.
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"error": err.Error()})
		return
	}
	a.audited(r, "policy-reload", "", "policy rules reloaded from the config file")
	writeJSON(w, http.StatusOK, map[string]string{"reloaded": "policy"})
}

func (a *API) domains(w http.ResponseWriter, r *http.Request) {
	ds, err := a.store.Domains()
	if err != nil {
		a.fail(w, err)
		return
	}
	if ds == nil {
		ds = []queue.DomainInfo{}
	}
	if ds, ok := paginate(w, r, ds, func(d queue.DomainInfo) string { return d.Domain }); ok {
		writeJSON(w, http.StatusOK, ds)
	}
}

func (a *API) resetDomain(w http.ResponseWriter, r *http.Request) {
	d := r.PathValue("domain")
	if err := a.store.ResetDomain(d); errors.Is(err, queue.ErrNotFound) {
		apiError(w, http.StatusNotFound, "no TLS history for "+d)
		return
	} else if err != nil {
		a.fail(w, err)
		return
	}
	a.logger.Warn("domain TLS history reset by admin", "domain", d)
	a.audited(r, "domain-reset", "", "TLS history of "+d+" forgotten")
	writeJSON(w, http.StatusOK, map[string]string{"reset": d})
}

// fail answers err; a not-found is a message's (routes about anything
// else answer their own not-found first).
func (a *API) fail(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, queue.ErrNotFound):
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such message"})
		return
	case errors.Is(err, queue.ErrHeld), errors.Is(err, queue.ErrFinished), errors.Is(err, queue.ErrAmbiguous):
		// Refusals the admin must read as they are.
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"error": err.Error(), "kind": refusalKind(err)})
		return
	}
	a.logger.Error("admin API", "err", err)
	writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "internal error"})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// refusalKind names a refusal so that the client can give back the same
// error the spool file would have: "held", "finished", "ambiguous".
func refusalKind(err error) string {
	switch {
	case errors.Is(err, queue.ErrHeld):
		return "held"
	case errors.Is(err, queue.ErrFinished):
		return "finished"
	case errors.Is(err, queue.ErrAmbiguous):
		return "ambiguous"
	}
	return ""
}

// routeMux is a ServeMux that remembers the patterns of the API's
// routes, so that a test holds the OpenAPI description to them.
type routeMux struct {
	*http.ServeMux
	patterns []string
	internal bool // what is registered now is not described (pprof)
}

func (m *routeMux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.Handle(pattern, http.HandlerFunc(h))
}

func (m *routeMux) Handle(pattern string, h http.Handler) {
	if !m.internal {
		m.patterns = append(m.patterns, pattern)
	}
	m.ServeMux.Handle(pattern, h)
}
