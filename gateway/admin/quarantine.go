package admin

import (
	"encoding/json"
	"io"
	"net/http"

	"github.com/sealgate/sealgate/queue"
)

// restoreRequest is the body of POST /api/v1/queue/quarantine/restore.
// OldKeys are raw 32-byte spool keys (base64 in JSON), used for this
// request only and never logged.
type restoreRequest struct {
	IDs     []string `json:"ids"`
	OldKeys [][]byte `json:"old_keys,omitempty"`
}

func (a *API) quarantined(w http.ResponseWriter, r *http.Request) {
	q, err := a.store.Quarantined()
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, q)
}

func (a *API) restoreQuarantined(w http.ResponseWriter, r *http.Request) {
	var req restoreRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad request body: " + err.Error()})
		return
	}
	res, err := a.store.RestoreQuarantined(req.IDs, req.OldKeys...)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	for _, rr := range res {
		if rr.Restored {
			a.logger.Warn("quarantined message restored by admin", "queue_id", rr.ID)
			a.audited(r, "quarantine-restore", rr.ID, "quarantined record restored")
			a.wake(rr.ID)
		}
	}
	writeJSON(w, http.StatusOK, res)
}

// Quarantined lists the quarantined messages of the running server.
func (c *AdminClient) Quarantined() ([]queue.QuarantinedMessage, error) {
	var q []queue.QuarantinedMessage
	err := c.do(http.MethodGet, "/api/v1/queue/quarantine", &q)
	return q, err
}

// RestoreQuarantined asks the running server to restore quarantined
// messages; oldKeys travel in the request body.
func (c *AdminClient) RestoreQuarantined(ids []string, oldKeys ...[]byte) ([]queue.RestoreResult, error) {
	var res []queue.RestoreResult
	err := c.doBody(http.MethodPost, "/api/v1/queue/quarantine/restore", restoreRequest{IDs: ids, OldKeys: oldKeys}, &res)
	return res, err
}
