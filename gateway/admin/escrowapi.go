package admin

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/sealgate/sealgate/queue"
)

// The escrow routes of the admin API (behind the same lock as the rest):
//
//	GET  /api/v1/escrow                 every recipient's access record, without the logs
//	GET  /api/v1/escrow?queue_id=ID     the records, with logs, of the message escrowed from spool message ID
//	GET  /api/v1/escrow/{id}            the records of a message or access record ID, with logs
//	POST /api/v1/escrow/{id}/revoke     {"recipient": ADDR} or {}: end access (logged as by "admin")
//
// A server without escrow answers 409 with ErrEscrowOff's text.

// escrowRevoke is the body of POST /api/v1/escrow/{id}/revoke.
type escrowRevoke struct {
	Recipient string `json:"recipient,omitempty"`
}

// escrowOps is the API's view of the escrow store; nil when escrow is
// off on this node.
func (a *API) escrowOps(w http.ResponseWriter) EscrowOps {
	if a.escrow == nil {
		writeJSON(w, http.StatusConflict, map[string]string{"error": ErrEscrowOff.Error()})
		return nil
	}
	return a.escrow
}

func (a *API) listEscrow(w http.ResponseWriter, r *http.Request) {
	ops := a.escrowOps(w)
	if ops == nil {
		return
	}
	var recs []EscrowRecord
	var err error
	if q := r.URL.Query().Get("queue_id"); q != "" {
		recs, err = ops.ForQueueID(q)
	} else {
		recs, err = ops.List()
	}
	if err == nil {
		var ok bool
		if recs, ok = paginate(w, r, recs, func(e EscrowRecord) string { return e.ID }); !ok {
			return
		}
	}
	a.writeEscrow(w, recs, err)
}

func (a *API) showEscrow(w http.ResponseWriter, r *http.Request) {
	ops := a.escrowOps(w)
	if ops == nil {
		return
	}
	recs, err := ops.Show(r.PathValue("id"))
	a.writeEscrow(w, recs, err)
}

func (a *API) revokeEscrow(w http.ResponseWriter, r *http.Request) {
	ops := a.escrowOps(w)
	if ops == nil {
		return
	}
	var in escrowRevoke
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&in); err != nil && !errors.Is(err, io.EOF) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": `body must be {"recipient": ADDRESS} or {}`})
		return
	}
	id := r.PathValue("id")
	recs, err := ops.Revoke(id, in.Recipient)
	if err == nil {
		a.logger.Warn("escrowed message revoked by admin", "escrow_id", id, "recipient", in.Recipient, "remote", r.RemoteAddr)
		a.audited(r, "escrow-revoke", "", "escrowed message "+id+" revoked for "+cmp.Or(in.Recipient, "every recipient"))
	}
	a.writeEscrow(w, recs, err)
}

func (a *API) writeEscrow(w http.ResponseWriter, recs []EscrowRecord, err error) {
	switch {
	case errors.Is(err, queue.ErrEscrowGone):
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such escrowed message"})
	case errors.Is(err, ErrNoEscrowRecipient):
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"error": err.Error()})
	case err != nil:
		a.fail(w, err)
	default:
		if recs == nil {
			recs = []EscrowRecord{}
		}
		writeJSON(w, http.StatusOK, recs)
	}
}

// Escrow gives the escrow operations of the running server.
func (c *AdminClient) Escrow() EscrowOps { return escrowClient{c} }

// escrowClient runs the escrow operations over the admin API.
type escrowClient struct{ c *AdminClient }

func (e escrowClient) get(path string) ([]EscrowRecord, error) {
	var recs []EscrowRecord
	return recs, escrowErr(e.c.do(http.MethodGet, path, &recs))
}

func (e escrowClient) List() ([]EscrowRecord, error) { return e.get("/api/v1/escrow") }

func (e escrowClient) Show(id string) ([]EscrowRecord, error) {
	return e.get("/api/v1/escrow/" + url.PathEscape(id))
}

func (e escrowClient) ForQueueID(queueID string) ([]EscrowRecord, error) {
	return e.get("/api/v1/escrow?" + url.Values{"queue_id": {queueID}}.Encode())
}

func (e escrowClient) Revoke(id, recipient string) ([]EscrowRecord, error) {
	var recs []EscrowRecord
	err := e.c.doBody(http.MethodPost, "/api/v1/escrow/"+url.PathEscape(id)+"/revoke", escrowRevoke{Recipient: recipient}, &recs)
	var refused *refusedError
	if errors.As(err, &refused) {
		return nil, fmt.Errorf("%w: %s", ErrNoEscrowRecipient, refused.msg)
	}
	return recs, escrowErr(err)
}

// escrowErr turns the client's statuses back into the escrow errors.
func escrowErr(err error) error {
	switch {
	case errors.Is(err, queue.ErrNotFound):
		return queue.ErrEscrowGone
	case errors.Is(err, errConflict):
		return ErrEscrowOff
	}
	return err
}
